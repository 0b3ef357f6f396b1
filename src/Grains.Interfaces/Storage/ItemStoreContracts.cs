using Nightshift.Batches;
using Nightshift.Models;
using Nightshift.Pools;

namespace Nightshift.Storage;

/// <summary>
/// The bulk table of items: requests, attempts, retry state, results and leases. Items live here,
/// not in grain state, so a million-item batch never sits in one grain's memory.
/// </summary>
public interface IItemStore : IItemIngest, IItemDispatch, IItemCatalogue
{
    /// <summary>Applies the schema (idempotent) and, for a store owned by one process, requeues items whose process died.</summary>
    /// <param name="cancellationToken">Stops waiting for the database.</param>
    Task InitializeAsync(CancellationToken cancellationToken);
}

/// <summary>The store's ingest role: a submission's items go in all at once or not at all.</summary>
public interface IItemIngest
{
    /// <summary>
    /// Opens an all-or-nothing ingest of a batch's items: nothing is visible to anyone until
    /// <see cref="IItemIngestSession.CommitAsync"/>, and disposing without committing leaves nothing behind.
    /// </summary>
    /// <param name="batchId">The new batch.</param>
    /// <param name="pool">The pool the batch runs on, recorded in the catalogue.</param>
    /// <param name="cancellationToken">Stops waiting for the database.</param>
    Task<IItemIngestSession> BeginIngestAsync(string batchId, string pool, CancellationToken cancellationToken);
}

/// <summary>One submission's items on their way into the store.</summary>
public interface IItemIngestSession : IAsyncDisposable
{
    /// <summary>Adds one item; returns the error when its custom_id is already in the batch.</summary>
    /// <param name="item">The validated line.</param>
    /// <param name="cancellationToken">Stops the upload.</param>
    ValueTask<LineError?> AddAsync(ItemRequest item, CancellationToken cancellationToken);

    /// <summary>Makes the items and the batch's catalogue row visible at once.</summary>
    /// <param name="cancellationToken">Stops waiting for the database.</param>
    Task CommitAsync(CancellationToken cancellationToken);
}

/// <summary>The store's dispatch role: claims, fenced results, leases and their recovery.</summary>
public interface IItemDispatch
{
    /// <summary>
    /// The store belongs to one process, so whatever held leases before this process started is dead:
    /// nothing from before the start can still be running.
    /// </summary>
    bool OwnedByOneProcess { get; }

    /// <summary>
    /// Claims up to one due pending item per lease, in input order, and marks each leased under its
    /// lease's fencing token.
    /// </summary>
    /// <param name="batchId">The batch whose items are claimed.</param>
    /// <param name="leases">One slot lease per item wanted; its token fences the item's writes.</param>
    /// <param name="now">Items due by then are claimable.</param>
    /// <param name="cancellationToken">Not observed: a queued write commits with its group.</param>
    Task<IReadOnlyList<ClaimedItem>> ClaimAsync(string batchId, IReadOnlyList<ItemLease> leases, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Records an attempt's end. Fenced: written only while the item is still leased under
    /// <see cref="AttemptRecord.LeaseToken"/>; returns <c>false</c> (and writes nothing) otherwise.
    /// </summary>
    /// <param name="record">The attempt's outcome.</param>
    /// <param name="cancellationToken">Not observed: a queued write commits with its group.</param>
    Task<bool> RecordAttemptAsync(AttemptRecord record, CancellationToken cancellationToken);

    /// <summary>When the earliest pending item of the batch is due, or <c>null</c> when none is pending.</summary>
    /// <param name="batchId">The batch.</param>
    /// <param name="cancellationToken">Stops waiting for the database.</param>
    Task<DateTimeOffset?> NextDueAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>
    /// Puts leased items whose lease expired before <paramref name="now"/> back to pending, counting the
    /// interruption; an item interrupted too often fails instead (a poison item must not crash-loop
    /// the cluster).
    /// </summary>
    /// <param name="batchId">The batch.</param>
    /// <param name="now">Leases that expired before this are dead.</param>
    /// <param name="cancellationToken">Not observed: a queued write commits with its group.</param>
    Task<IReadOnlyList<RequeuedItem>> RequeueExpiredLeasesAsync(string batchId, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Extends the leases still held under their tokens; returns the tokens extended. A token missing
    /// from the answer was lost (expired and requeued, or the item was cancelled): its result will be fenced.
    /// </summary>
    /// <param name="leases">The leases to extend, with their new expiry.</param>
    /// <param name="cancellationToken">Not observed: a queued write commits with its group.</param>
    Task<IReadOnlySet<long>> ExtendLeasesAsync(IReadOnlyList<LeaseExtension> leases, CancellationToken cancellationToken);

    /// <summary>
    /// Gives a leased item back to pending: its call was stopped before it could end (<paramref name="interrupted"/>:
    /// the interruption counts toward failing it as poison), or it was claimed ahead and never started.
    /// </summary>
    /// <param name="batchId">The item's batch.</param>
    /// <param name="index">The item.</param>
    /// <param name="leaseToken">The lease it must still be held under.</param>
    /// <param name="interrupted">Whether the give-back counts as an interruption.</param>
    /// <param name="cancellationToken">Not observed: a queued write commits with its group.</param>
    Task<bool> ReleaseLeaseAsync(string batchId, int index, long leaseToken, bool interrupted, CancellationToken cancellationToken);

    /// <summary>
    /// The batch's counts and its items now leased (the calls a new batch activation must expect
    /// reports from), read from one snapshot so they agree.
    /// </summary>
    /// <param name="batchId">The batch.</param>
    /// <param name="cancellationToken">Stops waiting for the database.</param>
    Task<BatchProgress> ReadProgressAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>Where the given items stand in the store, for a batch to reconcile reports that never reached it.</summary>
    /// <param name="batchId">The batch.</param>
    /// <param name="indices">The items asked about.</param>
    /// <param name="cancellationToken">Stops waiting for the database.</param>
    Task<IReadOnlyList<ItemSnapshot>> GetItemsAsync(string batchId, IReadOnlyCollection<int> indices, CancellationToken cancellationToken);

    /// <summary>Batches with items still pending or leased: the ones to resume after a restart.</summary>
    /// <param name="cancellationToken">Stops waiting for the database.</param>
    Task<IReadOnlyList<string>> ListUnfinishedBatchesAsync(CancellationToken cancellationToken);

    /// <summary>Marks every pending item of the batch cancelled.</summary>
    /// <param name="batchId">The batch.</param>
    /// <param name="cancellationToken">Not observed: a queued write commits with its group.</param>
    Task<int> CancelPendingAsync(string batchId, CancellationToken cancellationToken);
}

/// <summary>The store's results and catalogue role: what listings, usage and downloads read.</summary>
public interface IItemCatalogue
{
    /// <summary>Records a batch's new state in the catalogue that listings read.</summary>
    /// <param name="batchId">The batch.</param>
    /// <param name="state">Its new state.</param>
    /// <param name="finishedAt">When it finished, if it did.</param>
    /// <param name="cancellationToken">Not observed: a queued write commits with its group.</param>
    Task SetBatchStateAsync(string batchId, BatchState state, DateTimeOffset? finishedAt, CancellationToken cancellationToken);

    /// <summary>A page of the batch catalogue, newest first, optionally of one state only.</summary>
    /// <param name="state">Only batches in this state, or all when <c>null</c>.</param>
    /// <param name="offset">Batches skipped.</param>
    /// <param name="limit">Most batches returned.</param>
    /// <param name="cancellationToken">Stops waiting for the database.</param>
    Task<IReadOnlyList<BatchRecord>> ListBatchesAsync(BatchState? state, int offset, int limit, CancellationToken cancellationToken);

    /// <summary>Adds a pool to the catalogue (idempotent).</summary>
    /// <param name="name">The pool.</param>
    /// <param name="cancellationToken">Not observed: a queued write commits with its group.</param>
    Task RegisterPoolAsync(string name, CancellationToken cancellationToken);

    /// <summary>The pools in the catalogue, by name.</summary>
    /// <param name="cancellationToken">Stops waiting for the database.</param>
    Task<IReadOnlyList<string>> ListPoolsAsync(CancellationToken cancellationToken);

    /// <summary>The tokens recorded for the items of every batch submitted to the pool.</summary>
    /// <param name="pool">The pool.</param>
    /// <param name="cancellationToken">Stops waiting for the database.</param>
    Task<TokenTotals> GetPoolUsageAsync(string pool, CancellationToken cancellationToken);

    /// <summary>How many of the batch's items are in each state, and the tokens they used.</summary>
    /// <param name="batchId">The batch.</param>
    /// <param name="cancellationToken">Stops waiting for the database.</param>
    Task<ItemCounts> CountAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>Streams the batch's terminal items in input order.</summary>
    /// <param name="batchId">The batch.</param>
    /// <param name="cancellationToken">Stops the stream.</param>
    IAsyncEnumerable<ItemResult> ReadResultsAsync(string batchId, CancellationToken cancellationToken);
}

/// <summary>Where an item stands. The values are stored: never renumber them.</summary>
public enum ItemState
{
    /// <summary>Waiting for a slot (and for its backoff, if it has tried before).</summary>
    Pending = 0,

    /// <summary>Claimed under a lease; its attempt may be running.</summary>
    Leased = 1,

    /// <summary>Terminal: the model answered and the answer is stored.</summary>
    Succeeded = 2,

    /// <summary>Terminal: out of attempts, or a permanent error.</summary>
    Failed = 3,

    /// <summary>Terminal: its batch was cancelled before it ran.</summary>
    Cancelled = 4,
}

/// <summary>One validated input line.</summary>
/// <param name="Index">The 0-based line number.</param>
/// <param name="CustomId">The caller's id, unique in the batch.</param>
/// <param name="Method">The HTTP method of the line.</param>
/// <param name="Url">The endpoint the line names.</param>
/// <param name="Body">The request body, as JSON.</param>
public sealed record ItemRequest(int Index, string CustomId, string Method, string Url, string Body);

/// <summary>An input problem.</summary>
/// <param name="Line">The 1-based line.</param>
/// <param name="Field">The field it concerns, if one.</param>
/// <param name="Message">What is wrong.</param>
public sealed record LineError(long Line, string? Field, string Message)
{
    /// <inheritdoc/>
    public override string ToString() => Field is null ? $"line {Line}: {Message}" : $"line {Line}, field '{Field}': {Message}";
}

/// <summary>An item claimed for an attempt.</summary>
/// <param name="Index">The item.</param>
/// <param name="CustomId">The caller's id.</param>
/// <param name="Body">The request body.</param>
/// <param name="Attempts">Attempts made before this one (429s not counted).</param>
/// <param name="RateLimitedAttempts">Attempts made before this one that ended in a 429.</param>
/// <param name="Lease">The lease it is held under.</param>
public sealed record ClaimedItem(int Index, string CustomId, string Body, int Attempts, int RateLimitedAttempts, ItemLease Lease);

/// <summary>The end of an attempt, as the store records it.</summary>
/// <param name="BatchId">The item's batch.</param>
/// <param name="Index">The item.</param>
/// <param name="LeaseToken">The lease the attempt ran under; the write is fenced on it.</param>
/// <param name="State">The item's new state: pending again (to retry) or terminal.</param>
/// <param name="Attempts">Attempts made, this one included (429s not counted).</param>
/// <param name="RateLimitedAttempts">Attempts that ended in a 429, this one included.</param>
/// <param name="NextAttemptAt">When a retry is due, if one is.</param>
/// <param name="RetryState">What the retry policy keeps between attempts.</param>
/// <param name="StatusCode">The model's HTTP status, if it answered.</param>
/// <param name="Response">The model's answer body.</param>
/// <param name="Error">Why the attempt failed.</param>
/// <param name="Usage">Tokens the provider reported.</param>
/// <param name="At">When the attempt ended.</param>
public sealed record AttemptRecord(
    string BatchId,
    int Index,
    long LeaseToken,
    ItemState State,
    int Attempts,
    int RateLimitedAttempts,
    DateTimeOffset? NextAttemptAt,
    string? RetryState,
    int? StatusCode,
    string? Response,
    string? Error,
    TokenUsage Usage,
    DateTimeOffset At);

/// <summary>A batch's items per state, and the tokens they used.</summary>
/// <param name="Pending">Items waiting.</param>
/// <param name="Leased">Items claimed.</param>
/// <param name="Succeeded">Items that succeeded.</param>
/// <param name="Failed">Items that failed.</param>
/// <param name="Cancelled">Items cancelled.</param>
/// <param name="InputTokens">Input tokens used.</param>
/// <param name="OutputTokens">Output tokens used.</param>
/// <param name="CachedTokens">The part of <paramref name="InputTokens"/> served from a prompt cache.</param>
public sealed record ItemCounts(long Pending, long Leased, long Succeeded, long Failed, long Cancelled, long InputTokens, long OutputTokens, long CachedTokens = 0)
{
    /// <summary>All the batch's items.</summary>
    public long Total => Pending + Leased + Succeeded + Failed + Cancelled;
}

/// <summary>A batch as the catalogue lists it.</summary>
/// <param name="BatchId">The batch.</param>
/// <param name="Pool">Its pool.</param>
/// <param name="ItemCount">Its items.</param>
/// <param name="State">Its state as its grain last recorded it.</param>
/// <param name="CreatedAt">When it was accepted.</param>
/// <param name="FinishedAt">When it finished, if it did.</param>
public sealed record BatchRecord(string BatchId, string Pool, int ItemCount, BatchState State, DateTimeOffset CreatedAt, DateTimeOffset? FinishedAt);

/// <summary>A batch's counts and its leased items, from one snapshot.</summary>
/// <param name="Counts">The counts.</param>
/// <param name="Leased">The items leased at that moment.</param>
public sealed record BatchProgress(ItemCounts Counts, IReadOnlyList<ItemSnapshot> Leased);

/// <summary>Where one item stands.</summary>
/// <param name="Index">The item.</param>
/// <param name="State">Its state.</param>
/// <param name="LeaseToken">The lease it is held under, while leased.</param>
/// <param name="InputTokens">Input tokens it used.</param>
/// <param name="OutputTokens">Output tokens it used.</param>
/// <param name="CachedTokens">The part of <paramref name="InputTokens"/> served from a prompt cache.</param>
public sealed record ItemSnapshot(int Index, ItemState State, long? LeaseToken, long InputTokens, long OutputTokens, long CachedTokens = 0);

/// <summary>Tokens the items of a pool's batches used, as their providers reported them.</summary>
/// <param name="InputTokens">Input tokens.</param>
/// <param name="OutputTokens">Output tokens.</param>
/// <param name="CachedTokens">The part of <paramref name="InputTokens"/> served from a prompt cache.</param>
public sealed record TokenTotals(long InputTokens, long OutputTokens, long CachedTokens);

/// <summary>A lease to extend.</summary>
/// <param name="BatchId">The item's batch.</param>
/// <param name="Index">The item.</param>
/// <param name="Token">The lease's fencing token.</param>
/// <param name="ExpiresAt">The new expiry.</param>
public sealed record LeaseExtension(string BatchId, int Index, long Token, DateTimeOffset ExpiresAt);

/// <summary>An item whose lease died.</summary>
/// <param name="Index">The item.</param>
/// <param name="Failed">Whether it failed, interrupted too often, instead of going back to pending.</param>
public sealed record RequeuedItem(int Index, bool Failed);

/// <summary>A terminal item, as the output lists it.</summary>
/// <param name="Index">The item.</param>
/// <param name="CustomId">The caller's id.</param>
/// <param name="State">Succeeded, failed or cancelled.</param>
/// <param name="StatusCode">The model's HTTP status, if it answered.</param>
/// <param name="Response">The model's answer body.</param>
/// <param name="Error">Why it failed.</param>
public sealed record ItemResult(int Index, string CustomId, ItemState State, int? StatusCode, string? Response, string? Error);
