using Nightshift.Pools;

namespace Nightshift.Batches;

public enum BatchState
{
    NotFound = 0,
    Running = 1,
    Paused = 2,
    Cancelled = 3,
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
}

[GenerateSerializer, Immutable, Alias("nightshift.BatchSpec")]
public sealed record BatchSpec(
    [property: Id(0)] string Pool,
    [property: Id(1)] int ItemCount,
    [property: Id(2)] BatchOptions Options);

[GenerateSerializer, Immutable, Alias("nightshift.BatchStatus")]
public sealed record BatchStatus
{
    [Id(0)] public required string BatchId { get; init; }
    [Id(1)] public BatchState State { get; init; }
    [Id(2)] public string? Pool { get; init; }
    [Id(3)] public long Total { get; init; }
    [Id(4)] public long Pending { get; init; }
    /// <summary>
    /// Items claimed whose attempt has not reported yet. Can briefly exceed the pool's cap: a call frees
    /// its slot when it ends, before its result is written and reported.
    /// </summary>
    [Id(5)] public long Running { get; init; }
    [Id(6)] public long Succeeded { get; init; }
    [Id(7)] public long Failed { get; init; }
    [Id(8)] public long Cancelled { get; init; }
    [Id(9)] public long InputTokens { get; init; }
    [Id(10)] public long OutputTokens { get; init; }
    [Id(11)] public DateTimeOffset? CreatedAt { get; init; }
    [Id(12)] public DateTimeOffset? FinishedAt { get; init; }

    /// <summary>The silo the batch's activation runs on.</summary>
    [Id(13)] public string? Silo { get; init; }

    /// <summary>The part of <see cref="InputTokens"/> the provider served from its prompt cache.</summary>
    [Id(14)] public long CachedTokens { get; init; }

    /// <summary>Items that reached an end: succeeded, failed or cancelled.</summary>
    public long Done => Succeeded + Failed + Cancelled;

    public bool IsFinished => State is BatchState.Completed or BatchState.Cancelled && Running == 0;
}

/// <summary>What became of an item's attempt.</summary>
public enum ItemOutcome
{
    Succeeded = 0,
    Failed = 1,
    Retrying = 2,
    Cancelled = 3,
    /// <summary>The attempt's lease was lost before its result could be written; the result was discarded.</summary>
    Fenced = 4,
}

[GenerateSerializer, Immutable, Alias("nightshift.ItemReport")]
public sealed record ItemReport(
    [property: Id(0)] int Index,
    [property: Id(1)] long LeaseToken,
    [property: Id(2)] ItemOutcome Outcome,
    [property: Id(3)] long InputTokens,
    [property: Id(4)] long OutputTokens,
    [property: Id(5)] long CachedTokens = 0);
