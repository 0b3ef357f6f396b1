using Microsoft.Extensions.Logging;
using Nightshift.Batches;
using Nightshift.Storage;

namespace Nightshift.Recovery;

/// <summary>
/// Where a crash is recovered. A crash leaves items at one of the numbered checkpoints of their
/// durable path (submitter → batch → item, see <c>docs/architecture.md</c>); these steps, all in this
/// folder, bring every such item back to pending or to its end:
/// <list type="number">
/// <item><b>Start-up requeue</b> (<see cref="StartupRequeue"/>): a store owned by one process (the
/// <c>run</c> command's SQLite file) requeues every leased item when that process starts, since nothing
/// from before it can still be running (checkpoints 3–6).</item>
/// <item><b>Batch resume</b> (<see cref="BatchResumer"/>, and each batch's reminder): every unfinished
/// batch is activated at start-up, which runs steps 3 and 4 for it (after checkpoint 2).</item>
/// <item><b>Lease expiry</b> (<see cref="RequeueExpiredAsync"/>): items whose holder stopped renewing their
/// claim, because it died with its silo, go back to pending; one interrupted too often fails as poison
/// (checkpoints 3–6).</item>
/// <item><b>Reconcile</b> (<see cref="ReconcileAsync"/>): items whose result is durable but whose report
/// never reached the batch (its silo died after checkpoint 7) are counted from the store.</item>
/// </list>
/// The pool's slots recover on their own: a new pool activation counts the slots the last one saved,
/// its holders renew theirs, and a slot nobody renews expires past its call's deadline
/// (<c>Pools/PoolLimiter.RestoreSlots</c>).
/// </summary>
internal sealed partial class BatchRecovery(IItemStore store, string batchId, TimeProvider time, ILogger logger)
{
    /// <summary>The items in flight at the last reconcile, with their claim tokens.</summary>
    private Dictionary<int, long> _seenInFlight = [];

    /// <summary>
    /// What a new batch activation starts from: the leases that expired requeued (step 3), then the
    /// batch's counts and the calls still running on live silos, which will report to this activation.
    /// </summary>
    public async Task<BatchProgress> RecoverAsync(CancellationToken cancellationToken)
    {
        await store.RequeueExpiredLeasesAsync(batchId, time.GetUtcNow(), cancellationToken);
        return await store.ReadProgressAsync(batchId, cancellationToken);
    }

    /// <summary>
    /// Step 3, lease expiry: requeues the items whose claim expired and takes those this batch waited on
    /// out of <paramref name="inFlight"/> (item index → claim token). A late report from their holder is stale.
    /// </summary>
    public async Task<IReadOnlyList<RequeuedItem>> RequeueExpiredAsync(Dictionary<int, long> inFlight, CancellationToken cancellationToken)
    {
        var died = new List<RequeuedItem>();
        foreach (var item in await store.RequeueExpiredLeasesAsync(batchId, time.GetUtcNow(), cancellationToken))
        {
            if (inFlight.Remove(item.Index))
            {
                LogLeaseDied(logger, batchId, item.Index, item.Failed);
                died.Add(item);
            }
        }

        return died;
    }

    /// <summary>
    /// Step 4, reconcile: the items of <paramref name="inFlight"/> the store shows past the attempt this
    /// batch waits on, taken out of it with what became of them. A report that still arrives is then stale.
    /// Only an item in flight under the same claim at the previous reconcile is looked up: a report follows
    /// its result's commit by milliseconds, so one younger than that is on its way, not lost (looking it up
    /// would count it here and turn its report stale, as it did for every call in flight at once).
    /// </summary>
    public async Task<IReadOnlyList<(ItemSnapshot Item, ItemOutcome Outcome)>> ReconcileAsync(Dictionary<int, long> inFlight, CancellationToken cancellationToken)
    {
        List<int> suspects = [.. inFlight.Where(item => _seenInFlight.TryGetValue(item.Key, out var token) && token == item.Value).Select(item => item.Key)];
        _seenInFlight = new Dictionary<int, long>(inFlight);
        if (suspects.Count == 0)
        {
            return [];
        }

        var reconciled = new List<(ItemSnapshot, ItemOutcome)>();
        foreach (var item in await store.GetItemsAsync(batchId, suspects, cancellationToken))
        {
            if (item.State == ItemState.Leased && item.LeaseToken == inFlight.GetValueOrDefault(item.Index))
            {
                continue;
            }

            if (inFlight.Remove(item.Index))
            {
                LogReconciled(logger, batchId, item.Index, item.State);
                reconciled.Add((item, item.State switch
                {
                    ItemState.Succeeded => ItemOutcome.Succeeded,
                    ItemState.Failed => ItemOutcome.Failed,
                    ItemState.Cancelled => ItemOutcome.Cancelled,
                    _ => ItemOutcome.Retrying,
                }));
            }
        }

        return reconciled;
    }

    [LoggerMessage(EventId = 2005, Level = LogLevel.Warning, Message = "Batch {BatchId} item {Index} lost its lease holder; failed as a poison item: {Failed}")]
    private static partial void LogLeaseDied(ILogger logger, string batchId, int index, bool failed);

    [LoggerMessage(EventId = 2006, Level = LogLevel.Warning, Message = "Batch {BatchId} item {Index} never reported its attempt; the store shows it {State}")]
    private static partial void LogReconciled(ILogger logger, string batchId, int index, ItemState state);
}
