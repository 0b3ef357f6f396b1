using Nightshift.Batches;
using Nightshift.Pools;
using Orleans.Concurrency;

namespace Nightshift.Items;

/// <summary>One model request of a batch; key: <see cref="ItemKey.Format"/>.</summary>
public interface IItemGrain : IGrainWithStringKey
{
    /// <summary>
    /// Starts one attempt under <paramref name="assignment"/>'s lease: the call runs on the item's own
    /// activation, which reports to its batch and pool when it ends. One-way: a start that never arrives
    /// leaves the item's claim to expire and be requeued, and its slot's lease to expire in the pool.
    /// </summary>
    [OneWay]
    Task Start(ItemAssignment assignment);

    /// <summary>
    /// Activates the item ahead of its slot (its batch claimed it ahead), so that <see cref="Start"/> costs one
    /// message when the slot frees; does nothing else. One-way: nothing waits for the activation.
    /// </summary>
    [OneWay]
    Task Prepare();

    /// <summary>Aborts the running attempt, if any; its slot is freed and the item is recorded cancelled.</summary>
    Task Abort();
}

/// <summary>
/// Everything an item needs for one attempt, claimed from the item store by its batch. <see cref="Lease"/> is
/// the item's claim in the store (its token fences the result; renewed in the store while the call runs);
/// <see cref="Slot"/> the pool slot the call runs under (renewed with the pool). <see cref="RenewedAt"/> is
/// when the claim's lease was last extended; <c>RetryState</c> what the item's last attempt left
/// (as its claim read it from the store); <c>Stage</c> the pool the item runs on (0: its batch's, <c>n</c>: the
/// batch's <c>n</c>th escalation); <c>Run</c> the batch's run (a retry starts the next), which keys the item's webhook.
/// </summary>
[GenerateSerializer, Immutable, Alias("nightshift.ItemAssignment")]
public sealed record ItemAssignment(
    [property: Id(0)] string BatchId,
    [property: Id(1)] int Index,
    [property: Id(2)] string CustomId,
    [property: Id(3)] string Body,
    [property: Id(4)] int Attempts,
    [property: Id(5)] int RateLimitedAttempts,
    [property: Id(6)] ItemLease Lease,
    [property: Id(7)] BatchOptions Options,
    [property: Id(8)] ModelBinding Model,
    [property: Id(9)] ItemLease Slot,
    [property: Id(10)] DateTimeOffset RenewedAt,
    [property: Id(11)] string? RetryState = null,
    [property: Id(12)] int Stage = 0,
    [property: Id(13)] int Run = 0);

/// <summary>How item grains are keyed.</summary>
public static class ItemKey
{
    /// <summary>
    /// The item grain's key. Starts with a letter that is not a hex digit, so no key is ever read as an
    /// integer or Guid key by Orleans' storage providers.
    /// </summary>
    public static string Format(string batchId, int index) => $"i/{batchId}/{index}";
}
