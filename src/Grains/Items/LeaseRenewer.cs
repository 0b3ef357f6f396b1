using System.Collections.Concurrent;
using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using Nightshift.Pools;
using Nightshift.Storage;

namespace Nightshift.Items;

/// <summary>
/// Keeps alive the leases of the calls running on this silo, and of the items its batches claimed ahead.
/// Every <see cref="CheckPeriod"/> it takes the leases a third or more of whose duration has passed since
/// their last renewal and extends them in bulk: one store transaction for all the item claims, then one
/// message per pool for the slots their calls run on, not one per item. A claim the store no longer holds
/// under its token was lost; its item's result will be fenced.
/// </summary>
internal sealed partial class LeaseRenewer(IItemStore store, IGrainFactory grains, TimeProvider time, ILogger<LeaseRenewer> logger)
    : ILifecycleParticipant<ISiloLifecycle>, IDisposable
{
    /// <summary>
    /// How often the renewer looks for leases due for renewal: well within the shortest lease a pool may have
    /// (1 s), so a lease is renewed about a third of the way through it and never lapses between two looks.
    /// </summary>
    public static readonly TimeSpan CheckPeriod = TimeSpan.FromMilliseconds(250);

    /// <summary>The claims held, by batch and token: two batches' claims may carry the same token.</summary>
    private readonly ConcurrentDictionary<ClaimKey, HeldLease> _held = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly CancellationTokenSource _abandoned = new();
    private Task _loop = Task.CompletedTask;

    /// <summary>
    /// Cancelled when the silo stops without grace: calls still running are abandoned (their leases
    /// expire and their batches requeue them), as they would be had the process died.
    /// </summary>
    public CancellationToken Abandoned => _abandoned.Token;

    /// <summary>
    /// Renews an item's claim <paramref name="lease"/> in the store from now on, and the pool
    /// <paramref name="slot"/> its call runs on, if any; the claim was last extended at <paramref name="renewedAt"/>.
    /// Returns a token cancelled when the claim is lost: the store no longer holds it, or it went a whole
    /// lease without renewal by this silo's clock (renewals failing, or the process paused). The call on
    /// it must stop then: its result would be fenced, and its slot may be granted again.
    /// </summary>
    public CancellationToken Hold(string batchId, int index, ItemLease lease, ItemLease? slot, DateTimeOffset renewedAt)
    {
        // No timer and no wait handle: a token source left to the collector holds nothing to free.
        var held = new HeldLease(batchId, index, lease, slot, renewedAt, new CancellationTokenSource());
        _held[held.Claim] = held;
        return held.Lost.Token;
    }

    /// <summary>Stops renewing a batch's claim; returns when it was last extended, or <c>null</c> when it was not held.</summary>
    public DateTimeOffset? Drop(string batchId, long token) => _held.TryRemove(new ClaimKey(batchId, token), out var held) ? held.RenewedAt : null;

    // Application services stop after the grains have deactivated, so leases stay renewed while
    // deactivating items let their calls finish.
    public void Participate(ISiloLifecycle lifecycle) =>
        lifecycle.Subscribe(nameof(LeaseRenewer), ServiceLifecycleStage.ApplicationServices, StartAsync, StopAsync);

    /// <summary>Renews every lease due now; the loop calls it each period.</summary>
    private async Task RenewDueAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        foreach (var held in _held.Values.Where(held => now - held.RenewedAt > held.Lease.Duration).ToList())
        {
            // Its claim may have expired and been requeued: stop the call before it runs beside its successor.
            await LoseAsync(held, LogLapsed);
        }

        var due = _held.Values.Where(held => now - held.RenewedAt >= held.Lease.Duration / 3).ToList();
        if (due.Count == 0)
        {
            return;
        }

        var extensions = due.Select(held => new LeaseExtension(held.BatchId, held.Index, held.Lease.Token, now + held.Lease.Duration)).ToList();
        var extended = await store.ExtendLeasesAsync(extensions, cancellationToken);
        var renewals = new List<(string Pool, LeaseRenewal Renewal)>(extended.Count);
        foreach (var held in due)
        {
            if (!extended.Contains(held.Claim))
            {
                await LoseAsync(held, LogLost);
                continue;
            }

            _held.TryUpdate(held.Claim, held with { RenewedAt = now }, held);
            if (held.Slot is { } slot)
            {
                renewals.Add((slot.Pool, new LeaseRenewal(held.BatchId, slot.Token, now + slot.Duration)));
            }
        }

        // Not awaited: a pool whose silo is paused or cut off must not hold up the next period's store
        // renewals, here or for any other pool (the pool counts a slot past its lease anyway).
        foreach (var pool in renewals.GroupBy(r => r.Pool, StringComparer.Ordinal))
        {
            _ = RenewSlotsAsync(pool.Key, [.. pool.Select(r => r.Renewal)]);
        }
    }

    private async Task RenewSlotsAsync(string pool, ImmutableArray<LeaseRenewal> renewals)
    {
        try
        {
            await grains.GetGrain<IPoolGrain>(pool).Renew(renewals);
        }
        catch (Exception failure)
        {
            LogSlotRenewFailed(logger, failure, pool, renewals.Length);
        }
    }

    private async Task LoseAsync(HeldLease held, Action<ILogger, string, int, long> log)
    {
        if (_held.TryRemove(new KeyValuePair<ClaimKey, HeldLease>(held.Claim, held)))
        {
            log(logger, held.BatchId, held.Index, held.Lease.Token);
            await held.Lost.CancelAsync();
        }
    }

    public void Dispose()
    {
        _stopping.Dispose();
        _abandoned.Dispose();
    }

    private Task StartAsync(CancellationToken cancellationToken)
    {
        _loop = RunAsync(_stopping.Token);
        return Task.CompletedTask;
    }

    private async Task StopAsync(CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested && !_held.IsEmpty)
        {
            LogAbandoned(logger, _held.Count);
            await _abandoned.CancelAsync();
        }

        await _stopping.CancelAsync();
        await _loop;
    }

    private async Task RunAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(CheckPeriod, time, stopping);
                await RenewDueAsync(stopping);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception failure)
            {
                // The next period tries again; a lease that expires meanwhile is recovered by its batch.
                LogRenewFailed(logger, failure, _held.Count);
            }
        }
    }

    private sealed record HeldLease(string BatchId, int Index, ItemLease Lease, ItemLease? Slot, DateTimeOffset RenewedAt, CancellationTokenSource Lost)
    {
        public ClaimKey Claim => new(BatchId, Lease.Token);
    }

    [LoggerMessage(EventId = 3101, Level = LogLevel.Warning, Message = "Item {BatchId}/{Index} lost lease {Token}: its call is stopped and no result of it is kept")]
    private static partial void LogLost(ILogger logger, string batchId, int index, long token);

    [LoggerMessage(EventId = 3104, Level = LogLevel.Warning, Message = "Item {BatchId}/{Index} went a whole lease without renewal (lease {Token}): its call is stopped, as its claim may have passed to another silo")]
    private static partial void LogLapsed(ILogger logger, string batchId, int index, long token);

    [LoggerMessage(EventId = 3103, Level = LogLevel.Warning, Message = "The silo stopped without grace; abandoning {Count} call(s) still running")]
    private static partial void LogAbandoned(ILogger logger, int count);

    [LoggerMessage(EventId = 3105, Level = LogLevel.Warning, Message = "Renewing {Count} slot(s) with pool {Pool} failed; their calls go on, and the next period renews them again")]
    private static partial void LogSlotRenewFailed(ILogger logger, Exception exception, string pool, int count);

    [LoggerMessage(EventId = 3102, Level = LogLevel.Error, Message = "Renewing {Count} lease(s) failed; retrying next period")]
    private static partial void LogRenewFailed(ILogger logger, Exception exception, int count);
}
