namespace Nightshift.MockModel;

/// <summary>What the mock model has served since start or the last reset; also the JSON of <c>GET /stats</c>.</summary>
/// <param name="Total">Completion requests received.</param>
/// <param name="Current">Completion requests in flight now.</param>
/// <param name="Peak">Most completion requests that were in flight at once.</param>
/// <param name="Calls">Completion requests received per custom_id.</param>
/// <param name="CallsByClientPort">Completion requests received per caller's TCP port (each connection has its own, and belongs to one process).</param>
public sealed record MockModelStats(long Total, int Current, int Peak, IReadOnlyDictionary<string, int> Calls, IReadOnlyDictionary<int, int> CallsByClientPort)
{
    /// <summary>Completion requests read per model they asked for (the body's <c>model</c>, else the deployment in the path).</summary>
    public IReadOnlyDictionary<string, int> CallsByModel { get; init; } = new Dictionary<string, int>(StringComparer.Ordinal);

    /// <summary>200 answers sent in full (their times are in <c>GET /stats/successes</c>).</summary>
    public long Succeeded { get; init; }

    /// <summary>Most requests in flight at once per group of custom ids (<c>team-a-17</c> counts in <c>team-a</c>: the part before the last <c>-</c>).</summary>
    public IReadOnlyDictionary<string, int> PeakByGroup { get; init; } = new Dictionary<string, int>(StringComparer.Ordinal);

    /// <summary>429s the rate-limit buckets answered at arrival (injected 429s are in <see cref="Injected"/>).</summary>
    public long RateLimited { get; init; }

    /// <summary>Injected faults by name (<c>429</c>, <c>500</c>, <c>503</c>, <c>529</c>, <c>truncate</c>, <c>hang</c>), every name present.</summary>
    public IReadOnlyDictionary<string, long> Injected { get; init; } = new Dictionary<string, long>(StringComparer.Ordinal);

    /// <summary>Answers by HTTP status, truncated ones included; requests whose client left before the answer are not.</summary>
    public IReadOnlyDictionary<int, long> StatusCounts { get; init; } = new Dictionary<int, long>();

    /// <summary>Tokens (prompt + completion, as <c>usage</c> reports them) of the requests the buckets admitted, whatever became of them.</summary>
    public long TokensAdmitted { get; init; }

    /// <summary>Tokens of the mock's own completions sent in full.</summary>
    public long TokensSucceeded { get; init; }

    /// <summary>The time-weighted average of the requests in flight between <see cref="FirstArrival"/> and <see cref="LastDeparture"/>; 0 before both.</summary>
    public double AverageInFlight { get; init; }

    /// <summary>When the first request arrived, in unix milliseconds; null before any.</summary>
    public long? FirstArrival { get; init; }

    /// <summary>When the last request left (answered or abandoned), in unix milliseconds; null before any.</summary>
    public long? LastDeparture { get; init; }
}
