using Nightshift.Batches;
using Nightshift.Storage;

namespace Nightshift.Submission;

/// <summary>
/// Turns a JSONL stream into a running batch, all or nothing: nothing is written unless the whole
/// input is valid and its pool has queue room for every item.
/// </summary>
public interface IBatchSubmitter
{
    /// <summary>Reads, validates and stores the batch's items, reserves them in the pool, and starts the batch.</summary>
    /// <param name="batchId">The new batch's id.</param>
    /// <param name="pool">The pool it runs on.</param>
    /// <param name="batchOptions">How its items are retried and timed.</param>
    /// <param name="jsonl">The OpenAI Batch input lines.</param>
    /// <param name="cancellationToken">Stops the submission; nothing is kept.</param>
    Task<SubmissionResult> SubmitAsync(string batchId, string pool, BatchOptions batchOptions, Stream jsonl, CancellationToken cancellationToken);

    /// <summary>
    /// As <see cref="SubmitAsync(string, string, BatchOptions, Stream, CancellationToken)"/>, for the batch of an
    /// idempotency key: when that batch exists (or is committed first by a concurrent submission of the key),
    /// the same payload answers with it (<see cref="SubmissionResult.Replayed"/>) and another payload is
    /// refused (<see cref="SubmissionRejection.KeyReused"/>). Exactly one batch is created per key.
    /// </summary>
    /// <param name="batchId">The key's batch id.</param>
    /// <param name="pool">The pool it runs on.</param>
    /// <param name="batchOptions">How its items are retried and timed.</param>
    /// <param name="jsonl">The OpenAI Batch input lines.</param>
    /// <param name="idempotencyKey">The key, as the client sent it (for the refusal's message).</param>
    /// <param name="cancellationToken">Stops the submission; nothing is kept.</param>
    Task<SubmissionResult> SubmitAsync(string batchId, string pool, BatchOptions batchOptions, Stream jsonl, string? idempotencyKey, CancellationToken cancellationToken);
}

/// <summary>Why a submission was refused.</summary>
public enum SubmissionRejection
{
    /// <summary>Accepted.</summary>
    None = 0,

    /// <summary>A line is malformed or breaks a limit; the errors name the lines.</summary>
    InvalidInput,

    /// <summary>The pool does not exist.</summary>
    UnknownPool,

    /// <summary>The pool's queue has no room for the batch (HTTP 429).</summary>
    QueueFull,

    /// <summary>A batch with that id exists already.</summary>
    BatchExists,

    /// <summary>The idempotency key's batch exists with another payload (HTTP 422).</summary>
    KeyReused,

    /// <summary>An option is not usable (a <c>schema</c> that is no JSON Schema); the reason names it (HTTP 400).</summary>
    InvalidOptions,
}

/// <summary>The outcome of a submission. A rejected submission wrote nothing.</summary>
/// <param name="BatchId">The batch.</param>
/// <param name="ItemCount">Items accepted (0 when rejected).</param>
/// <param name="Rejection">Why it was refused, or <see cref="SubmissionRejection.None"/>.</param>
/// <param name="Errors">The invalid lines, up to the configured number.</param>
/// <param name="Reason">What to tell the caller when refused.</param>
public sealed record SubmissionResult(string BatchId, int ItemCount, SubmissionRejection Rejection, IReadOnlyList<LineError> Errors, string? Reason)
{
    /// <summary>Whether the batch was accepted and started (or, <see cref="Replayed"/>, had been).</summary>
    public bool Accepted => Rejection == SubmissionRejection.None;

    /// <summary>The idempotency key's batch existed with the same payload: this is it, nothing new was written.</summary>
    public bool Replayed { get; init; }
}
