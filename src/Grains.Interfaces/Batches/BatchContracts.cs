namespace Nightshift.Batches;

/// <summary>Where a batch stands, as its grain and the catalogue record it.</summary>
public enum BatchState
{
    /// <summary>No batch was submitted under this id.</summary>
    NotFound = 0,

    /// <summary>Items are being dispatched, or are waiting for their next attempt.</summary>
    Running = 1,

    /// <summary>No new call starts; calls running finish and are recorded.</summary>
    Paused = 2,

    /// <summary>Every pending item was cancelled; calls running finish and are recorded.</summary>
    Cancelled = 3,

    /// <summary>Every item reached an end: succeeded, failed or cancelled.</summary>
    Completed = 4,
}

/// <summary>How a batch's items are retried and timed.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.BatchOptions")]
public sealed record BatchOptions
{
    /// <summary>Attempts an item may make that end in a model error (not counting 429s). Default: 5.</summary>
    [Id(0)] public int MaxAttempts { get; init; } = 5;

    /// <summary>Attempts an item may make that end in a 429. Default: 20.</summary>
    [Id(1)] public int MaxRateLimitedAttempts { get; init; } = 20;

    /// <summary>How long one attempt may take before it is aborted and counted as a timeout. Default: 2 min.</summary>
    [Id(2)] public TimeSpan AttemptTimeout { get; init; } = TimeSpan.FromMinutes(2);

    /// <summary>First backoff step; doubled per failed attempt, with full jitter. Default: 1 s.</summary>
    [Id(3)] public TimeSpan BaseDelay { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Longest backoff between attempts. Default: 60 s.</summary>
    [Id(4)] public TimeSpan MaxDelay { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Share of the pool relative to other batches (1 to 10). Default: 1.</summary>
    [Id(5)] public int Priority { get; init; } = 1;

    /// <summary>
    /// A JSON Schema (its text) every item's answer must satisfy: <c>choices[0].message.content</c> parsed as
    /// JSON, as for a line whose <c>response_format</c> asks for a <c>json_schema</c>. Default: none.
    /// </summary>
    [Id(6)] public string? Schema { get; init; }

    /// <summary>Answers an item may give that fail validation before it fails as <c>validation_failed</c>. Default: 2.</summary>
    [Id(7)] public int MaxValidationAttempts { get; init; } = 2;

    /// <summary>
    /// The <c>temperature</c> each attempt is sent with, by the validation failures before it: the first
    /// attempt the first, each later one the next (the last stays). Default: none, each line's own.
    /// </summary>
    [Id(8)] public double[]? Temperatures { get; init; }

    /// <summary>How many of the batch's calls may run at once, inside its share of the pool. Default: none, its share alone.</summary>
    [Id(9)] public int? MaxRunning { get; init; }

    /// <summary>
    /// Where the batch's view is POSTed, signed, once it reaches a terminal state (completed or cancelled): an
    /// absolute http(s) URL the configuration allows (<c>Nightshift:Webhooks:AllowedUrls</c>). Default: none.
    /// </summary>
    [Id(10)] public string? CallbackUrl { get; init; }

    /// <summary>Who submitted the batch: set by the API from the caller's key, never read from a request. Default: none (no principals).</summary>
    [Id(11)] public BatchOwner? Owner { get; init; }

    /// <summary>
    /// The model every line names, in a pool of several models (set at submission, never read from a request): the
    /// model its teams' and users' model limits count the batch's calls under. Default: none, the pool's model.
    /// </summary>
    [Id(12)] public string? Model { get; init; }

    /// <summary>
    /// The models a batch's lines name when they name several, in a pool of several models (set at submission, never read
    /// from a request): every call of the batch counts under each of their model limits at once, which holds every one of
    /// them (and may hold the batch below one it would not reach). Default: none.
    /// </summary>
    [Id(15)] public string[]? Models { get; init; }

    /// <summary>The models whose limits the batch's calls count under: <see cref="Models"/>, or <see cref="Model"/> alone; <c>null</c>: the pool's.</summary>
    public string[]? CountedModels() => Models ?? (Model is { } model ? [model] : null);

    /// <summary>
    /// Pools to escalate to: after each answer that fails validation (and only then) the item's next attempt runs on
    /// the next pool of the list, under that pool's limits and with its model (the last stays). Default: none.
    /// </summary>
    [Id(13)] public string[]? Escalate { get; init; }

    /// <summary>
    /// Whether each item that fails for good is also POSTed to <see cref="CallbackUrl"/> as it fails (event
    /// <c>item.failed</c>, its result line as the body), besides the batch's end. Default: false.
    /// </summary>
    [Id(14)] public bool CallbackFailedItems { get; init; }

    /// <summary>The pool an item runs on after <paramref name="validationFailures"/> answers that failed validation: its stage's.</summary>
    public int StageAfter(int validationFailures) => Math.Min(validationFailures, Escalate?.Length ?? 0);
}

/// <summary>The user and team a batch belongs to: a non-admin caller sees only its team's batches.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.BatchOwner")]
public sealed record BatchOwner([property: Id(0)] string? User, [property: Id(1)] string? Team);

/// <summary>What a batch was submitted with: its pool, its item count and its options.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.BatchSpec")]
public sealed record BatchSpec(
    [property: Id(0)] string Pool,
    [property: Id(1)] int ItemCount,
    [property: Id(2)] BatchOptions Options);

/// <summary>A batch's live figures, as its grain counts them.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.BatchStatus")]
public sealed record BatchStatus
{
    /// <summary>The batch's id.</summary>
    [Id(0)] public required string BatchId { get; init; }

    /// <summary>Where the batch stands.</summary>
    [Id(1)] public BatchState State { get; init; }

    /// <summary>The pool the batch runs in; <c>null</c> for a batch not found.</summary>
    [Id(2)] public string? Pool { get; init; }

    /// <summary>The batch's items.</summary>
    [Id(3)] public long Total { get; init; }

    /// <summary>Items waiting for their first or next attempt.</summary>
    [Id(4)] public long Pending { get; init; }

    /// <summary>
    /// Items claimed whose attempt has not reported yet. Can briefly exceed the pool's cap: a call frees
    /// its slot when it ends, before its result is written and reported.
    /// </summary>
    [Id(5)] public long Running { get; init; }

    /// <summary>Items whose result is a success.</summary>
    [Id(6)] public long Succeeded { get; init; }

    /// <summary>Items that failed for good (attempts spent, or an error no retry can fix).</summary>
    [Id(7)] public long Failed { get; init; }

    /// <summary>Items cancelled before they ran.</summary>
    [Id(8)] public long Cancelled { get; init; }

    /// <summary>Prompt tokens the provider reported for the batch's items.</summary>
    [Id(9)] public long InputTokens { get; init; }

    /// <summary>Completion tokens the provider reported for the batch's items.</summary>
    [Id(10)] public long OutputTokens { get; init; }

    /// <summary>When the batch was submitted.</summary>
    [Id(11)] public DateTimeOffset? CreatedAt { get; init; }

    /// <summary>When the batch completed or was cancelled; <c>null</c> while it runs.</summary>
    [Id(12)] public DateTimeOffset? FinishedAt { get; init; }

    /// <summary>The silo the batch's activation runs on.</summary>
    [Id(13)] public string? Silo { get; init; }

    /// <summary>The part of <see cref="InputTokens"/> the provider served from its prompt cache.</summary>
    [Id(14)] public long CachedTokens { get; init; }

    /// <summary>Items that reached an end: succeeded, failed or cancelled.</summary>
    public long Done => Succeeded + Failed + Cancelled;

    /// <summary>The batch ended and no call of it is still running.</summary>
    public bool IsFinished => State is BatchState.Completed or BatchState.Cancelled && Running == 0;
}

/// <summary>What became of an item's attempt.</summary>
public enum ItemOutcome
{
    /// <summary>The result is a success and is stored.</summary>
    Succeeded = 0,

    /// <summary>The item failed for good; its error is stored.</summary>
    Failed = 1,

    /// <summary>The attempt failed and the item is pending again, due after its backoff.</summary>
    Retrying = 2,

    /// <summary>The item was cancelled before its call could start.</summary>
    Cancelled = 3,

    /// <summary>The attempt's lease was lost before its result could be written; the result was discarded.</summary>
    Fenced = 4,
}

/// <summary>
/// An item's report to its batch: which attempt (by its lease token) ended how, and the tokens it used; the pool the
/// attempt ran on (<c>null</c>: the batch's own) and the stage of the item's next attempt (0 but after an escalation).
/// </summary>
[GenerateSerializer, Immutable, Alias("nightshift.ItemReport")]
public sealed record ItemReport(
    [property: Id(0)] int Index,
    [property: Id(1)] long LeaseToken,
    [property: Id(2)] ItemOutcome Outcome,
    [property: Id(3)] long InputTokens,
    [property: Id(4)] long OutputTokens,
    [property: Id(5)] long CachedTokens = 0,
    [property: Id(6)] string? Pool = null,
    [property: Id(7)] int Stage = 0);
