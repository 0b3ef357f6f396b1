namespace Nightshift.MockModel;

/// <summary>What the mock model has served since start or the last reset; also the JSON of <c>GET /stats</c>.</summary>
/// <param name="Total">Completion requests received.</param>
/// <param name="Current">Completion requests in flight now.</param>
/// <param name="Peak">Most completion requests that were in flight at once.</param>
/// <param name="Calls">Completion requests received per custom_id.</param>
/// <param name="CallsByClientPort">Completion requests received per caller's TCP port (each connection has its own, and belongs to one process).</param>
public sealed record MockModelStats(long Total, int Current, int Peak, IReadOnlyDictionary<string, int> Calls, IReadOnlyDictionary<int, int> CallsByClientPort);
