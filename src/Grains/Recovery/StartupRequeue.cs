using Microsoft.Extensions.Logging;
using Nightshift.Storage;

namespace Nightshift.Recovery;

/// <summary>
/// Recovery step 1, start-up requeue: when the store belongs to this process alone (the <c>run</c>
/// command's SQLite file), every item still leased was leased by a process that died (checkpoints 3–6),
/// so all of them go back to pending at once, before any grain runs, instead of waiting for their
/// leases to expire. A shared store cannot tell a dead holder from a live one on another silo: there
/// the leases expire instead (step 3).
/// </summary>
internal sealed partial class StartupRequeue(IItemStore store, ILogger<StartupRequeue> logger) : ILifecycleParticipant<ISiloLifecycle>
{
    // Right after the store's schema (ServiceLifecycleStage.First), before anything can claim an item.
    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(StartupRequeue), ServiceLifecycleStage.First + 1, RequeueAsync);

    private async Task RequeueAsync(CancellationToken cancellationToken)
    {
        if (!store.OwnedByOneProcess)
        {
            return;
        }

        var requeued = await store.RequeueAllLeasesAsync(cancellationToken);
        if (requeued > 0)
        {
            LogRequeued(logger, requeued);
        }
    }

    [LoggerMessage(EventId = 2103, Level = LogLevel.Information, Message = "Requeued {Count} item(s) left leased by a process that died")]
    private static partial void LogRequeued(ILogger logger, int count);
}
