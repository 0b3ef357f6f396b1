using Microsoft.Extensions.Logging;
using Nightshift.Batches;
using Nightshift.Storage;

namespace Nightshift.Recovery;

/// <summary>
/// Recovery step 2, batch resume: the start-up task that resumes every unfinished batch as soon as the silo is active, instead of
/// waiting for its reminder's next tick: activating a batch grain rejoins its pool and requeues what
/// the crash interrupted. Runs on every silo; activating an active batch costs one call.
/// </summary>
internal sealed partial class BatchResumer(IItemStore store, IGrainFactory grains, ILogger<BatchResumer> logger)
    : ILifecycleParticipant<ISiloLifecycle>, IDisposable
{
    private readonly CancellationTokenSource _stopping = new();
    private Task _resuming = Task.CompletedTask;

    public void Dispose() => _stopping.Dispose();

    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(BatchResumer), ServiceLifecycleStage.Active, OnActiveAsync, OnStopAsync);

    private Task OnActiveAsync(CancellationToken cancellationToken)
    {
        // Not awaited: the silo is ready to serve while the batches come back.
        _resuming = ResumeAllAsync(_stopping.Token);
        return Task.CompletedTask;
    }

    private async Task OnStopAsync(CancellationToken cancellationToken)
    {
        await _stopping.CancelAsync();
        await _resuming;
    }

    private async Task ResumeAllAsync(CancellationToken stopping)
    {
        try
        {
            var batches = await store.ListUnfinishedBatchesAsync(stopping);
            foreach (var batchId in batches)
            {
                stopping.ThrowIfCancellationRequested();
                var status = await grains.GetGrain<IBatchGrain>(batchId).GetStatus();
                LogResumed(logger, batchId, status.State);
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
        catch (Exception failure)
        {
            // Each batch's reminder still brings it back on its next tick.
            LogResumeFailed(logger, failure);
        }
    }

    [LoggerMessage(EventId = 2101, Level = LogLevel.Information, Message = "Batch {BatchId} resumed at start-up ({State})")]
    private static partial void LogResumed(ILogger logger, string batchId, BatchState state);

    [LoggerMessage(EventId = 2102, Level = LogLevel.Error, Message = "Resuming unfinished batches at start-up failed; their reminders will resume them")]
    private static partial void LogResumeFailed(ILogger logger, Exception exception);
}
