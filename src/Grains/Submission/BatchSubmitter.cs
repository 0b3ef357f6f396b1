using System.Diagnostics;
using Microsoft.Extensions.Options;
using Nightshift.Batches;
using Nightshift.Diagnostics;
using Nightshift.Items;
using Nightshift.Pools;
using Nightshift.Storage;

namespace Nightshift.Submission;

/// <summary>
/// Turns a JSONL stream into a running batch, all or nothing: the items are streamed into the store in
/// one transaction, the pool reserves queue room for them, and only then is the transaction committed
/// and the batch started.
/// </summary>
public sealed class BatchSubmitter(IItemIngest store, IItemCatalogue catalogue, IGrainFactory grains, IOptions<SubmissionOptions> options) : IBatchSubmitter
{
    private readonly JsonlBatchReader _reader = new(options.Value);

    public Task<SubmissionResult> SubmitAsync(string batchId, string pool, BatchOptions batchOptions, Stream jsonl, CancellationToken cancellationToken) =>
        SubmitAsync(batchId, pool, batchOptions, jsonl, idempotencyKey: null, cancellationToken);

    public async Task<SubmissionResult> SubmitAsync(string batchId, string pool, BatchOptions batchOptions, Stream jsonl, string? idempotencyKey,
        CancellationToken cancellationToken)
    {
        using var span = NightshiftTelemetry.Source.StartActivity(NightshiftTelemetry.Spans.SubmitBatch);
        span?.SetTag(NightshiftTelemetry.Tags.BatchId, batchId);
        span?.SetTag(NightshiftTelemetry.Tags.Pool, pool);
        var result = await IngestAsync(batchId, pool, batchOptions, jsonl, idempotencyKey, cancellationToken);
        span?.SetTag(NightshiftTelemetry.Tags.ItemCount, result.ItemCount);
        if (!result.Accepted)
        {
            span?.SetTag(NightshiftTelemetry.Tags.Rejection, result.Rejection.ToString());
            span?.SetStatus(ActivityStatusCode.Error, result.Reason);
        }

        return result;
    }

    /// <summary>Why the pools a batch would escalate to cannot be: one that does not exist, or its own pool.</summary>
    private async Task<string?> EscalationProblemAsync(string pool, string[]? escalate)
    {
        foreach (var next in escalate ?? [])
        {
            if (next == pool)
            {
                return $"pool '{next}' is the batch's own pool; escalation moves an item to another";
            }

            if (await grains.GetGrain<IPoolGrain>(next).GetConfig() is null)
            {
                return $"pool '{next}' does not exist";
            }
        }

        return null;
    }

    private async Task<SubmissionResult> IngestAsync(string batchId, string pool, BatchOptions batchOptions, Stream jsonl, string? idempotencyKey,
        CancellationToken cancellationToken)
    {
        if (await grains.GetGrain<IPoolGrain>(pool).GetConfig() is not { } config)
        {
            return Rejected(batchId, SubmissionRejection.UnknownPool, $"pool '{pool}' does not exist");
        }

        // The schema is judged first, as staging judges it, before the escalation's pools are asked.
        if (SchemaRefusal(batchId, batchOptions) is { } refused)
        {
            return refused;
        }

        if (await EscalationProblemAsync(pool, batchOptions.Escalate) is { } escalation)
        {
            return Rejected(batchId, SubmissionRejection.InvalidOptions, $"escalate: {escalation}");
        }

        await using var staged = await StageAsync(batchId, pool, config.Model, batchOptions, jsonl, idempotencyKey, cancellationToken);
        return await AcceptAsync(staged, cancellationToken);
    }

    /// <summary>
    /// Reads and checks a submission's lines and stages its items in the store, where nothing shows yet: the part
    /// of a submission that needs no silo, so a one-shot run stages its file while its silo starts.
    /// <see cref="AcceptAsync"/> then reserves queue room, commits and starts the batch; disposing the staged
    /// submission without it keeps nothing. <paramref name="model"/> is the pool's: a line must name one of its models, when it has several.
    /// </summary>
    public async Task<StagedSubmission> StageAsync(string batchId, string pool, ModelBinding model, BatchOptions batchOptions, Stream jsonl,
        string? idempotencyKey, CancellationToken cancellationToken)
    {
        if (SchemaRefusal(batchId, batchOptions) is { } refused)
        {
            return new StagedSubmission(refused);
        }

        using var fingerprint = new SubmissionFingerprint(pool, batchOptions);
        if (await catalogue.GetBatchAsync(batchId, cancellationToken) is { } existing)
        {
            if (idempotencyKey is null)
            {
                return new StagedSubmission(Rejected(batchId, SubmissionRejection.BatchExists, $"batch '{batchId}' already exists"));
            }

            await foreach (var line in _reader.ReadAsync(jsonl, cancellationToken))
            {
                fingerprint.Add(line.Item);
            }

            return new StagedSubmission(Replay(existing, fingerprint.Finish(), idempotencyKey));
        }

        var errors = new List<LineError>();
        HashSet<string> named = new(StringComparer.Ordinal);
        var count = 0;
        var taken = false;
        var session = await store.BeginIngestAsync(batchId, pool, cancellationToken);
        try
        {
            await foreach (var line in _reader.ReadAsync(jsonl, cancellationToken))
            {
                var error = line.Error ?? ModelProblem(line.Item!, pool, model.Models);
                fingerprint.Add(line.Item);
                if (model.Models is { Length: > 0 } && line.Item is { } item)
                {
                    named.Add(ModelBinding.ModelOf(item.Body) ?? model.Model);
                }

                if (line.Item is { } valid && error is null && !taken)
                {
                    try
                    {
                        error = await session.AddAsync(valid, cancellationToken);
                        count++;
                    }
                    catch (BatchExistsException)
                    {
                        // A submission of the same key committed first, while this one was streaming. The rest
                        // is read only to tell whether it was the same payload.
                        taken = true;
                    }
                }

                if (error is not null)
                {
                    errors.Add(error);
                    if (errors.Count >= options.Value.MaxReportedErrors)
                    {
                        break;
                    }
                }
            }
        }
        catch
        {
            await session.DisposeAsync();
            throw;
        }

        if (errors.Count > 0)
        {
            await session.DisposeAsync();
            return new StagedSubmission(new SubmissionResult(batchId, 0, SubmissionRejection.InvalidInput, errors, $"{errors.Count} invalid line(s); first: {errors[0]}"));
        }

        return new StagedSubmission(batchId, pool, count, WithModels(batchOptions, named), session, fingerprint.Finish(), taken, idempotencyKey);
    }

    /// <summary>
    /// Accepts a staged submission: the pool reserves queue room for its items, and only then are they committed
    /// and the batch started. A submission refused while staged is answered as it was.
    /// </summary>
    public async Task<SubmissionResult> AcceptAsync(StagedSubmission staged, CancellationToken cancellationToken)
    {
        if (staged.Decided is { } decided)
        {
            return decided;
        }

        var (batchId, pool) = (staged.BatchId, staged.Pool);
        var taken = staged.Taken;
        if (!taken)
        {
            var reservation = await grains.GetGrain<IPoolGrain>(pool).Reserve(batchId, staged.Count, staged.Options.Priority);
            if (!reservation.Accepted)
            {
                return Rejected(batchId, SubmissionRejection.QueueFull, reservation.Reason);
            }

            try
            {
                await staged.Session.CommitAsync(staged.Options, staged.Fingerprint, cancellationToken);
            }
            catch (BatchExistsException)
            {
                // The other submission's reservation is the one that stays.
                taken = true;
            }
            catch
            {
                await grains.GetGrain<IPoolGrain>(pool).Remove(batchId);
                throw;
            }
        }

        if (taken)
        {
            var first = await catalogue.GetBatchAsync(batchId, cancellationToken)
                ?? throw new InvalidOperationException($"batch '{batchId}' was committed first, yet is not in the catalogue");
            return Replay(first, staged.Fingerprint, staged.IdempotencyKey ?? batchId);
        }

        // Checkpoint 1: every item and the batch's catalogue row (its spec with them) are durable, all
        // at once; before the commit nothing of the batch exists. A crash from here to checkpoint 2 leaves
        // a batch grain without state, which starts itself from the catalogue when first activated.
        await grains.GetGrain<IBatchGrain>(batchId).Start(new BatchSpec(pool, staged.Count, staged.Options));

        // Checkpoint 2: the batch grain holds its spec; from here it resumes on its own after any crash
        // (Recovery/BatchResumer at start-up, its reminder otherwise).
        return new SubmissionResult(batchId, staged.Count, SubmissionRejection.None, [], null);
    }

    /// <summary>The refusal of a batch whose <c>schema</c> option is not a JSON Schema; <c>null</c> when it has none or a good one.</summary>
    private static SubmissionResult? SchemaRefusal(string batchId, BatchOptions batchOptions) =>
        batchOptions.Schema is { } schema && AnswerValidator.SchemaProblem(schema) is { } problem
            ? Rejected(batchId, SubmissionRejection.InvalidOptions, $"schema: not a JSON Schema: {problem}")
            : null;

    /// <summary>
    /// In a pool of several models, a batch whose lines all name one counts under that model's limits; one whose lines
    /// name several, under all of theirs at once.
    /// </summary>
    private static BatchOptions WithModels(BatchOptions batchOptions, HashSet<string> named) => named.Count switch
    {
        0 => batchOptions,
        1 => batchOptions with { Model = named.Single() },
        _ => batchOptions with { Models = [.. named.Order(StringComparer.Ordinal)] },
    };

    /// <summary>
    /// A submission under an idempotency key whose batch exists: the same payload (pool, options and
    /// items) is the first submission again and answers with its batch; another payload is refused. A
    /// batch stored before fingerprints were has none, and is taken to be the same.
    /// </summary>
    private static SubmissionResult Replay(StoredBatch existing, string fingerprint, string idempotencyKey)
    {
        var batchId = existing.Record.BatchId;
        return existing.Fingerprint is null || fingerprint == existing.Fingerprint
            ? new SubmissionResult(batchId, existing.Record.ItemCount, SubmissionRejection.None, [], null) { Replayed = true }
            : Rejected(batchId, SubmissionRejection.KeyReused,
                $"Idempotency-Key '{idempotencyKey}' was used for batch '{batchId}' with another payload; use a new key for a new batch");
    }

    /// <summary>For a pool of several models: the problem with a line whose <c>body.model</c> is none of them; <c>null</c> when it is one, or names none.</summary>
    private static LineError? ModelProblem(ItemRequest item, string pool, string[]? models)
    {
        if (models is not { Length: > 0 } || ModelBinding.ModelOf(item.Body) is not { } model || models.Contains(model, StringComparer.Ordinal))
        {
            return null;
        }

        return new LineError(item.Index + 1, "body.model", $"'{model}' is not one of pool '{pool}''s models: {string.Join(", ", models)}");
    }

    private static SubmissionResult Rejected(string batchId, SubmissionRejection rejection, string? reason) =>
        new(batchId, 0, rejection, [], reason);
}
