using System.Diagnostics;
using Microsoft.Extensions.Options;
using Nightshift.Batches;
using Nightshift.Diagnostics;
using Nightshift.Pools;
using Nightshift.Storage;

namespace Nightshift.Submission;

/// <summary>
/// Turns a JSONL stream into a running batch, all or nothing: the items are streamed into the store in
/// one transaction, the pool reserves queue room for them, and only then is the transaction committed
/// and the batch started.
/// </summary>
public sealed class BatchSubmitter(IItemIngest store, IGrainFactory grains, IOptions<SubmissionOptions> options) : IBatchSubmitter
{
    private readonly JsonlBatchReader _reader = new(options.Value);

    public async Task<SubmissionResult> SubmitAsync(string batchId, string pool, BatchOptions batchOptions, Stream jsonl, CancellationToken cancellationToken)
    {
        using var span = NightshiftTelemetry.Source.StartActivity(NightshiftTelemetry.Spans.SubmitBatch);
        span?.SetTag(NightshiftTelemetry.Tags.BatchId, batchId);
        span?.SetTag(NightshiftTelemetry.Tags.Pool, pool);
        var result = await IngestAsync(batchId, pool, batchOptions, jsonl, cancellationToken);
        span?.SetTag(NightshiftTelemetry.Tags.ItemCount, result.ItemCount);
        if (!result.Accepted)
        {
            span?.SetTag(NightshiftTelemetry.Tags.Rejection, result.Rejection.ToString());
            span?.SetStatus(ActivityStatusCode.Error, result.Reason);
        }

        return result;
    }

    private async Task<SubmissionResult> IngestAsync(string batchId, string pool, BatchOptions batchOptions, Stream jsonl, CancellationToken cancellationToken)
    {
        if (await grains.GetGrain<IPoolGrain>(pool).GetConfig() is null)
        {
            return Rejected(batchId, SubmissionRejection.UnknownPool, $"pool '{pool}' does not exist");
        }

        var batch = grains.GetGrain<IBatchGrain>(batchId);
        if ((await batch.GetStatus()).State != BatchState.NotFound)
        {
            return Rejected(batchId, SubmissionRejection.BatchExists, $"batch '{batchId}' already exists");
        }

        var errors = new List<LineError>();
        var count = 0;
        await using var session = await store.BeginIngestAsync(batchId, pool, cancellationToken);
        await foreach (var line in _reader.ReadAsync(jsonl, cancellationToken))
        {
            var error = line.Error;
            if (line.Item is { } item)
            {
                error = await session.AddAsync(item, cancellationToken);
                count++;
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

        if (errors.Count > 0)
        {
            return new SubmissionResult(batchId, 0, SubmissionRejection.InvalidInput, errors, $"{errors.Count} invalid line(s); first: {errors[0]}");
        }

        var reservation = await grains.GetGrain<IPoolGrain>(pool).Reserve(batchId, count, batchOptions.Priority);
        if (!reservation.Accepted)
        {
            return Rejected(batchId, SubmissionRejection.QueueFull, reservation.Reason);
        }

        try
        {
            await session.CommitAsync(cancellationToken);
        }
        catch
        {
            await grains.GetGrain<IPoolGrain>(pool).Remove(batchId);
            throw;
        }

        // Checkpoint 1: every item and the batch's catalogue row are durable, all at once; before the
        // commit nothing of the batch exists. A crash from here to checkpoint 2 leaves the items
        // without a started batch grain.
        await batch.Start(new BatchSpec(pool, count, batchOptions));

        // Checkpoint 2: the batch grain holds its spec; from here it resumes on its own after any crash
        // (Recovery/BatchResumer at start-up, its reminder otherwise).
        return new SubmissionResult(batchId, count, SubmissionRejection.None, [], null);
    }

    private static SubmissionResult Rejected(string batchId, SubmissionRejection rejection, string? reason) =>
        new(batchId, 0, rejection, [], reason);
}
