using Nightshift.Batches;
using Nightshift.Models;
using Nightshift.Pools;

namespace Nightshift.Storage;

/// <summary>Items' requests, attempts, results and leases: here, not in grain state, so no grain holds a whole batch.</summary>
public interface IItemStore : IItemIngest, IItemDispatch, IItemCatalogue, IWebhookOutbox
{
    /// <summary>Applies the schema (idempotent).</summary>
    Task InitializeAsync(CancellationToken cancellationToken);
}

/// <summary>The store's ingest role: a submission's items go in all at once or not at all.</summary>
public interface IItemIngest
{
    /// <summary>Opens an ingest: nothing shows before <see cref="IItemIngestSession.CommitAsync"/> or stays without it.</summary>
    Task<IItemIngestSession> BeginIngestAsync(string batchId, string pool, CancellationToken cancellationToken);
}

/// <summary>One submission's items on their way into the store.</summary>
public interface IItemIngestSession : IAsyncDisposable
{
    /// <summary>Adds one item; returns the error when its custom_id is already in the batch.</summary>
    ValueTask<LineError?> AddAsync(ItemRequest item, CancellationToken cancellationToken);

    /// <summary>
    /// Makes the items and the catalogue row (with <paramref name="options"/>, so the batch can start from the store
    /// alone, and <paramref name="fingerprint"/>) visible at once; <see cref="BatchExistsException"/> when one id raced.
    /// </summary>
    Task CommitAsync(BatchOptions options, string? fingerprint, CancellationToken cancellationToken);
}

/// <summary>A batch of this id was committed by another submission first; nothing of this one was kept.</summary>
public sealed class BatchExistsException(string batchId, Exception inner) : Exception($"batch '{batchId}' was committed by another submission first", inner)
{
    /// <summary>The batch committed first.</summary>
    public string BatchId { get; } = batchId;
}

/// <summary>
/// Claims, fenced results, leases and their recovery. Writes are group-committed: a write cancelled while it waits is
/// withdrawn (never written); once in a group it commits with the group whatever its token says.
/// </summary>
public interface IItemDispatch
{
    /// <summary>The store belongs to one process: whatever held leases before it started is dead.</summary>
    bool OwnedByOneProcess { get; }

    /// <summary>
    /// Claims up to one due pending item of <paramref name="stage"/> per lease, in input order, each under its lease's fencing
    /// token. An item's stage is the pool it runs on: 0 its batch's, <c>n</c> the batch's <c>n</c>th escalation.
    /// </summary>
    Task<IReadOnlyList<ClaimedItem>> ClaimAsync(string batchId, int stage, IReadOnlyList<ItemLease> leases, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>Records an attempt's end if its item is still leased under its lease token; else <c>false</c>.</summary>
    Task<bool> RecordAttemptAsync(AttemptRecord record, CancellationToken cancellationToken);

    /// <summary>When the earliest pending item of the batch's <paramref name="stage"/> is due, or <c>null</c> when none is pending.</summary>
    Task<DateTimeOffset?> NextDueAsync(string batchId, int stage, CancellationToken cancellationToken);

    /// <summary>The batch's items not yet finished (pending or leased), by stage.</summary>
    Task<IReadOnlyDictionary<int, long>> CountUnfinishedByStageAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>
    /// Puts items whose lease expired before <paramref name="now"/> back to pending, counting the interruption; one
    /// interrupted too often fails instead (a poison item must not crash-loop the cluster).
    /// </summary>
    Task<IReadOnlyList<RequeuedItem>> RequeueExpiredLeasesAsync(string batchId, DateTimeOffset now, CancellationToken cancellationToken);

    /// <summary>
    /// Requeues every leased item as <see cref="RequeueExpiredLeasesAsync"/> does; returns how many. Only for a store
    /// <see cref="OwnedByOneProcess"/>, at its start, when no lease can have a live holder.
    /// </summary>
    Task<int> RequeueAllLeasesAsync(CancellationToken cancellationToken);

    /// <summary>Extends the leases still held under their tokens; returns the claims extended (a missing one was lost).</summary>
    Task<IReadOnlySet<ClaimKey>> ExtendLeasesAsync(IReadOnlyList<LeaseExtension> leases, CancellationToken cancellationToken);

    /// <summary>
    /// Puts the batch's failed and cancelled items that <paramref name="filter"/> picks back to pending with
    /// fresh budgets (attempts, 429s, interruptions, retry state), and moves the batch's catalogue row to
    /// <paramref name="pool"/> when given, in one transaction; returns how many.
    /// </summary>
    Task<int> RequeueTerminalAsync(string batchId, ItemRetryFilter filter, string? pool, CancellationToken cancellationToken);

    /// <summary>
    /// Gives a leased item back to pending: its call was stopped (<paramref name="interrupted"/>, which counts toward
    /// failing it as poison), or it was claimed ahead and never started.
    /// </summary>
    Task<bool> ReleaseLeaseAsync(string batchId, int index, long leaseToken, bool interrupted, CancellationToken cancellationToken);

    /// <summary>Adds an attempt that recorded no result (it was cut off) to its item's history, under the claim it ran on.</summary>
    Task LogAttemptAsync(string batchId, int index, long leaseToken, AttemptLog log, CancellationToken cancellationToken);

    /// <summary>The batch's counts and its leased items (whose reports a new activation expects), from one snapshot.</summary>
    Task<BatchProgress> ReadProgressAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>Where the given items stand in the store, for a batch to reconcile reports that never reached it.</summary>
    Task<IReadOnlyList<ItemSnapshot>> GetItemsAsync(string batchId, IReadOnlyCollection<int> indices, CancellationToken cancellationToken);

    /// <summary>Batches with items still pending or leased: the ones to resume after a restart.</summary>
    Task<IReadOnlyList<string>> ListUnfinishedBatchesAsync(CancellationToken cancellationToken);

    /// <summary>Marks every pending item of the batch cancelled.</summary>
    Task<int> CancelPendingAsync(string batchId, CancellationToken cancellationToken);
}

/// <summary>The store's results and catalogue role: what listings, usage and downloads read (writes group-committed, as dispatch's).</summary>
public interface IItemCatalogue
{
    /// <summary>Records a batch's new state in the catalogue that listings read.</summary>
    Task SetBatchStateAsync(string batchId, BatchState state, DateTimeOffset? finishedAt, CancellationToken cancellationToken);

    /// <summary>The batch's catalogue row with what it was submitted with, or <c>null</c> when no batch has the id.</summary>
    Task<StoredBatch?> GetBatchAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>A page of the batch catalogue, newest first, optionally of one state only, and of one owner's team only.</summary>
    Task<IReadOnlyList<BatchRecord>> ListBatchesAsync(BatchState? state, int offset, int limit, CancellationToken cancellationToken, string? team = null);

    /// <summary>Adds a pool to the catalogue (idempotent).</summary>
    Task RegisterPoolAsync(string name, CancellationToken cancellationToken);

    /// <summary>The pools in the catalogue, by name.</summary>
    Task<IReadOnlyList<string>> ListPoolsAsync(CancellationToken cancellationToken);

    /// <summary>The tokens recorded for the items of every batch submitted to the pool.</summary>
    Task<TokenTotals> GetPoolUsageAsync(string pool, CancellationToken cancellationToken);

    /// <summary>How many of the batch's items are in each state, and the tokens they used.</summary>
    Task<ItemCounts> CountAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>Streams the batch's terminal items in input order.</summary>
    IAsyncEnumerable<ItemResult> ReadResultsAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>The item of the batch with <paramref name="customId"/> and its attempts, or <c>null</c> when there is none.</summary>
    Task<ItemHistory?> GetItemHistoryAsync(string batchId, string customId, CancellationToken cancellationToken);

    /// <summary>The batch's calls that may have been billed with no answer kept.</summary>
    Task<MaybeBilled> GetMaybeBilledAsync(string batchId, CancellationToken cancellationToken);

    /// <summary>The item's result if it is finished, else (or when there is no such item) <c>null</c>.</summary>
    Task<ItemResult?> GetResultAsync(string batchId, int index, CancellationToken cancellationToken);
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

/// <summary>One validated input line; <c>Index</c> is its 0-based line number, <c>Body</c> the request as JSON.</summary>
public sealed record ItemRequest(int Index, string CustomId, string Method, string Url, string Body);

/// <summary>An input problem, with the 1-based line and the field it concerns, if one.</summary>
public sealed record LineError(long Line, string? Field, string Message)
{
    /// <inheritdoc/>
    public override string ToString() => Field is null ? $"line {Line}: {Message}" : $"line {Line}, field '{Field}': {Message}";
}

/// <summary>An item claimed under <c>Lease</c>: attempts so far (429s apart), retry state (JSON, <c>null</c> at first).</summary>
public sealed record ClaimedItem(int Index, string CustomId, string Body, int Attempts, int RateLimitedAttempts, ItemLease Lease, string? RetryState = null);

/// <summary>
/// An attempt's end, fenced on <c>LeaseToken</c>: the new state (pending to retry at <c>NextAttemptAt</c>, or terminal),
/// the attempts so far with this one, what the retry policy keeps, the model's answer and usage, and the stage of the
/// item's next attempt, and the webhook its failure announces (written in the same transaction).
/// </summary>
public sealed record AttemptRecord(
    string BatchId, int Index, long LeaseToken, ItemState State, int Attempts, int RateLimitedAttempts,
    DateTimeOffset? NextAttemptAt, string? RetryState, int? StatusCode, string? Response, string? Error,
    TokenUsage Usage, DateTimeOffset At, AttemptLog? Log = null, int Stage = 0, WebhookDelivery? Webhook = null);

/// <summary>
/// One call as its item's history keeps it: when it started and how long it took, the pool and model it ran on, its
/// outcome (<see cref="AttemptOutcomes"/>), the provider's status and the error, the tokens reported, and whether it
/// may have been billed with no answer kept (sent, then cut off, timed out or lost; <c>EstimatedTokens</c> its estimate).
/// </summary>
public sealed record AttemptLog(
    DateTimeOffset StartedAt, TimeSpan Duration, string Pool, string Model, string Outcome, int? StatusCode, string? Error,
    TokenUsage Usage, bool MaybeBilled, long EstimatedTokens);

/// <summary>The outcomes an attempt's history names.</summary>
public static class AttemptOutcomes
{
    /// <summary>The answer was kept as the item's result.</summary>
    public const string Succeeded = "succeeded";

    /// <summary>A permanent error, or the last attempt its budget allowed: the item failed.</summary>
    public const string Failed = "failed";

    /// <summary>A retryable error (5xx, 408, a timeout, a broken connection or body): the item was asked again later.</summary>
    public const string Retried = "retried";

    /// <summary>A 429 (or Anthropic's 529): the item was asked again after the provider's wait.</summary>
    public const string RateLimited = "rate_limited";

    /// <summary>An answer that failed the JSON Schema it was asked for (retried, or failing the item once its budget is spent).</summary>
    public const string ValidationFailed = "validation_failed";

    /// <summary>The batch was cancelled during the call.</summary>
    public const string Cancelled = "cancelled";

    /// <summary>The call was cut off (its silo stopping, its claim lost) and the item went back to pending.</summary>
    public const string Interrupted = "interrupted";

    /// <summary>The answer came after the item's claim was lost (to lease expiry): it was discarded, and the call may have been billed.</summary>
    public const string Discarded = "discarded";
}

/// <summary>An item with every attempt it made, oldest first.</summary>
public sealed record ItemHistory(
    int Index, string CustomId, ItemState State, int Attempts, int RateLimitedAttempts, int Interruptions, int? StatusCode, string? Error,
    TokenUsage Usage, IReadOnlyList<AttemptLog> History);

/// <summary>The calls of a batch that may have been billed with no answer kept, and their estimated tokens.</summary>
public sealed record MaybeBilled(long Calls, long EstimatedTokens);

/// <summary>A batch's items per state, and the tokens they used (<c>CachedTokens</c> is the part of the input served from a prompt cache).</summary>
public sealed record ItemCounts(long Pending, long Leased, long Succeeded, long Failed, long Cancelled, long InputTokens, long OutputTokens, long CachedTokens = 0)
{
    /// <summary>All the batch's items.</summary>
    public long Total => Pending + Leased + Succeeded + Failed + Cancelled;
}

/// <summary>A batch as the catalogue lists it, in the state its grain last recorded.</summary>
public sealed record BatchRecord(string BatchId, string Pool, int ItemCount, BatchState State, DateTimeOffset CreatedAt, DateTimeOffset? FinishedAt,
    BatchOwner? Owner = null);

/// <summary>A catalogue row with its options (<c>null</c> if stored before they were) and its submission's fingerprint.</summary>
public sealed record StoredBatch(BatchRecord Record, BatchOptions? Options, string? Fingerprint);

/// <summary>A batch's counts and the items leased at that moment, from one snapshot.</summary>
public sealed record BatchProgress(ItemCounts Counts, IReadOnlyList<ItemSnapshot> Leased);

/// <summary>Where one item stands: its state, the lease token while leased, and the tokens it used.</summary>
public sealed record ItemSnapshot(int Index, ItemState State, long? LeaseToken, long InputTokens, long OutputTokens, long CachedTokens = 0);

/// <summary>Tokens the items of a pool's batches used, as their providers reported them.</summary>
public sealed record TokenTotals(long InputTokens, long OutputTokens, long CachedTokens);

/// <summary>A lease to extend to <c>ExpiresAt</c>, if it is still held under its fencing <c>Token</c>.</summary>
public sealed record LeaseExtension(string BatchId, int Index, long Token, DateTimeOffset ExpiresAt)
{
    /// <summary>The claim this lease belongs to.</summary>
    public ClaimKey Claim => new(BatchId, Token);
}

/// <summary>
/// An item's claim: its batch and fencing token. A token is unique within its batch, not across batches (every
/// batch's first activation numbers its claims from the same start), so a claim is known by both.
/// </summary>
public readonly record struct ClaimKey(string BatchId, long Token);

/// <summary>An item whose lease died: back to pending, or <c>Failed</c> when it was interrupted too often.</summary>
public sealed record RequeuedItem(int Index, bool Failed);

/// <summary>A terminal item (succeeded, failed or cancelled), as the output lists it.</summary>
public sealed record ItemResult(int Index, string CustomId, ItemState State, int? StatusCode, string? Response, string? Error);

/// <summary>
/// Which terminal items a retry picks: of one <see cref="State"/> (<see cref="ItemState.Failed"/> or
/// <see cref="ItemState.Cancelled"/>; <c>null</c>: both), with one <see cref="ErrorCode"/> of the results'
/// (<c>validation_failed</c>, <c>failed</c> or <c>cancelled</c>; <c>null</c>: any).
/// </summary>
[GenerateSerializer, Immutable, Alias("nightshift.ItemRetryFilter")]
public sealed record ItemRetryFilter([property: Id(0)] ItemState? State, [property: Id(1)] string? ErrorCode);

/// <summary>
/// The store's webhook outbox: each end of a batch's run to announce, written by the batch before its grain state
/// says it finished, and delivered by whichever process claims it (its next attempt time is also its claim).
/// </summary>
public interface IWebhookOutbox
{
    /// <summary>Adds the delivery, unless the outbox holds one for the same batch and run already.</summary>
    Task EnqueueWebhookAsync(WebhookDelivery delivery, CancellationToken cancellationToken);

    /// <summary>
    /// Takes up to <paramref name="max"/> pending deliveries due at <paramref name="now"/>, oldest first: each one's
    /// attempts go up by one and its next attempt moves to <paramref name="until"/>, so no other process takes it meanwhile.
    /// </summary>
    Task<IReadOnlyList<WebhookDelivery>> ClaimWebhooksAsync(DateTimeOffset now, DateTimeOffset until, int max, CancellationToken cancellationToken);

    /// <summary>Records how an attempt went: delivered, given up, or pending again from <paramref name="nextAttemptAt"/>.</summary>
    Task RecordWebhookAsync(string batchId, int run, int item, WebhookState state, DateTimeOffset nextAttemptAt, string? error, CancellationToken cancellationToken);

    /// <summary>The batch's deliveries, one per run that reached its end and one per item failed (if it asked for those), oldest run first.</summary>
    Task<IReadOnlyList<WebhookStatus>> ListWebhooksAsync(string batchId, CancellationToken cancellationToken);
}

/// <summary>Where a webhook delivery stands.</summary>
public enum WebhookState
{
    /// <summary>Not delivered yet; tried again from its next attempt time.</summary>
    Pending = 0,

    /// <summary>The receiver answered 2xx.</summary>
    Delivered = 1,

    /// <summary>Every attempt failed, or the URL is no longer allowed; not tried again.</summary>
    GivenUp = 2,
}

/// <summary>
/// One announcement of a batch's end, or of an item's failure: <paramref name="Run"/> counts the batch's runs (a retry
/// starts the next), so each run's end, and each item's failure in a run, is announced once; <paramref name="Item"/> is
/// the failed item's index (-1 for the batch's end); <paramref name="Attempts"/> includes the one the claim that read it begins.
/// </summary>
public sealed record WebhookDelivery(string BatchId, int Run, string Event, string Url, int Attempts, DateTimeOffset CreatedAt, int Item = WebhookDelivery.BatchEnd)
{
    /// <summary>The <see cref="Item"/> of a batch's end.</summary>
    public const int BatchEnd = -1;
}

/// <summary>A delivery as the batch's view lists it.</summary>
public sealed record WebhookStatus(int Run, string Event, WebhookState State, int Attempts, DateTimeOffset CreatedAt, DateTimeOffset? DeliveredAt, string? LastError,
    int Item = WebhookDelivery.BatchEnd);
