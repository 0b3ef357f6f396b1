using System.Collections.Immutable;
using Nightshift.Pools;
using Nightshift.Storage;
using Orleans.Concurrency;

namespace Nightshift.Batches;

/// <summary>One batch: its spec, state and counters. Asks its pool for slots and fans items out.</summary>
public interface IBatchGrain : IGrainWithStringKey
{
    /// <summary>Starts a batch whose items are already in the item store. Idempotent.</summary>
    Task Start(BatchSpec spec);

    /// <summary>State and counters; <see cref="BatchState.NotFound"/> for an unknown id.</summary>
    Task<BatchStatus> GetStatus();

    /// <summary>
    /// Slots granted by the pool. One-way: the pool never waits on a batch, so the pool and its
    /// batches can call each other without a turn ever waiting on the other.
    /// </summary>
    [OneWay]
    Task SlotsGranted(ImmutableArray<ItemLease> leases);

    /// <summary>
    /// The pool wants these hot slots back (another batch's share, a lower cap, a pause, a budget now in force): each
    /// is freed when its call ends instead of starting another. Named, since a batch that escalates holds slots of
    /// several pools, whose tokens may coincide. One-way, as <see cref="SlotsGranted"/>.
    /// </summary>
    [OneWay]
    Task SlotsRevoked(string pool, ImmutableArray<long> tokens);

    /// <summary>
    /// An item's attempt has ended (its result is durable); called by the item grain, with the hot slot the
    /// call ran on when that slot comes back to the batch. The batch starts its next item on the slot at once,
    /// or frees it in the pool when it was revoked, the call's outcome concerns the pool (a 429, a refusal), or
    /// no item is ready. One message for both, and one-way: the item neither waits for the next call to start
    /// nor for the count. A report lost with a silo is reconciled from the store (Recovery/BatchRecovery), and
    /// its slot expires in the pool as the item's own release would.
    /// </summary>
    [OneWay]
    Task ItemFinished(ItemReport report, SlotRelease? hotSlot);

    /// <summary>Stops starting calls and gives the batch's slots back; calls running finish. Persisted.</summary>
    Task Pause();

    /// <summary>Starts dispatching again after <see cref="Pause"/>.</summary>
    Task Resume();

    /// <summary>Cancels every pending item; calls running finish and are recorded. Persisted.</summary>
    Task Cancel();

    /// <summary>
    /// Runs a finished batch again for its failed or cancelled items that <paramref name="filter"/> picks, with
    /// fresh budgets, on <paramref name="pool"/> when given (else its own); returns how many went back to
    /// pending (0 leaves the batch as it was). Throws <see cref="InvalidOperationException"/> while the batch
    /// runs, <see cref="ArgumentException"/> for a pool that does not exist.
    /// </summary>
    Task<int> Retry(ItemRetryFilter filter, string? pool);
}
