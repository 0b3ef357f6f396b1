using Nightshift.Batches;
using Nightshift.Storage;

namespace Nightshift.Submission;

/// <summary>
/// A submission read and staged by <see cref="BatchSubmitter.StageAsync"/>: its items wait in the store, not yet
/// visible, for <see cref="BatchSubmitter.AcceptAsync"/>; or it was already answered (<see cref="Decided"/>: refused,
/// or an idempotent replay). Disposing it drops whatever was staged and not committed.
/// </summary>
public sealed class StagedSubmission : IAsyncDisposable
{
    private readonly IItemIngestSession? _session;

    internal StagedSubmission(SubmissionResult decided)
    {
        Decided = decided;
        BatchId = decided.BatchId;
        Pool = "";
        Options = new BatchOptions();
        Fingerprint = "";
    }

    internal StagedSubmission(string batchId, string pool, int count, BatchOptions options, IItemIngestSession session, string fingerprint, bool taken,
        string? idempotencyKey)
    {
        BatchId = batchId;
        Pool = pool;
        Count = count;
        Options = options;
        _session = session;
        Fingerprint = fingerprint;
        Taken = taken;
        IdempotencyKey = idempotencyKey;
    }

    /// <summary>The answer already given while staging, when there is nothing to accept.</summary>
    public SubmissionResult? Decided { get; }

    public string BatchId { get; }

    internal string Pool { get; }

    /// <summary>The items staged.</summary>
    internal int Count { get; }

    /// <summary>The batch's options, with the models its lines name in a pool of several.</summary>
    internal BatchOptions Options { get; }

    internal IItemIngestSession Session => _session ?? throw new InvalidOperationException("A submission already answered has no items staged.");

    internal string Fingerprint { get; }

    /// <summary>A submission of the same id committed first while this one was read: there is nothing of this one to commit.</summary>
    internal bool Taken { get; }

    internal string? IdempotencyKey { get; }

    public ValueTask DisposeAsync() => _session?.DisposeAsync() ?? ValueTask.CompletedTask;
}
