using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using Nightshift.Batches;
using Nightshift.Hosting;

namespace Nightshift.Pools;

[GenerateSerializer, Alias("nightshift.PoolGrainState")]
public sealed class PoolGrainState
{
    [Id(0)] public PoolConfig? Config { get; set; }

    /// <summary>Bumped by every activation; the high half of every fencing token it issues.</summary>
    [Id(1)] public long Epoch { get; set; }

    [Id(2)] public DateTimeOffset? CooldownUntil { get; set; }
}

/// <summary>
/// The limiter grain: slot accounting lives in memory (<see cref="PoolLimiter"/>); only the
/// configuration, the epoch and the cooldown are persisted.
/// </summary>
internal sealed partial class PoolGrain(
    [PersistentState(StorageNames.PoolState, StorageNames.Grains)] IPersistentState<PoolGrainState> state,
    TimeProvider time,
    ILogger<PoolGrain> logger) : Grain, IPoolGrain
{
    private static readonly TimeSpan TickPeriod = TimeSpan.FromMilliseconds(200);

    private PoolLimiter? _limiter;
    private IGrainTimer? _tick;

    private string Name => this.GetPrimaryKeyString();

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (state.State.Config is { } config)
        {
            await StartLimiterAsync(config);
        }
    }

    public async Task Configure(PoolConfig config)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(config.MaxRunning, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(config.MaxQueued, 1);
        state.State.Config = config;
        if (_limiter is null)
        {
            await StartLimiterAsync(config);
        }
        else
        {
            _limiter.Config = config;
            await state.WriteStateAsync();
            await GrantAsync();
        }

        LogConfigured(logger, Name, config.MaxRunning, config.MaxQueued);
    }

    public Task<PoolConfig?> GetConfig() => Task.FromResult(state.State.Config);

    public Task<PoolSnapshot> GetSnapshot()
    {
        var limiter = Limiter;
        return Task.FromResult(new PoolSnapshot(Name, limiter.Config, limiter.Running, limiter.Queued, limiter.EffectiveCap,
            limiter.CooldownUntil, limiter.RateLimited, limiter.BatchCount));
    }

    public Task<QueueReservation> Reserve(string batchId, int itemCount, int priority)
    {
        var reservation = Limiter.Reserve(batchId, itemCount, priority);
        EnsureTicking();
        return Task.FromResult(reservation);
    }

    public async Task Register(string batchId, long outstanding, int priority)
    {
        Limiter.Register(batchId, outstanding, priority);
        EnsureTicking();
        await GrantAsync();
    }

    public async Task SetPaused(string batchId, bool paused)
    {
        Limiter.SetPaused(batchId, paused);
        await GrantAsync();
    }

    public Task Remove(string batchId)
    {
        Limiter.Remove(batchId);
        return Task.CompletedTask;
    }

    public async Task Release(ImmutableArray<SlotRelease> releases)
    {
        var limiter = Limiter;
        var cooldownBefore = limiter.CooldownUntil;
        foreach (var release in releases)
        {
            if (!limiter.Release(release))
            {
                LogUnknownRelease(logger, Name, release.Token, release.BatchId);
            }
        }

        if (limiter.CooldownUntil is { } until && until != cooldownBefore)
        {
            LogCooldown(logger, Name, until);
            state.State.CooldownUntil = until;
            await state.WriteStateAsync();
        }

        await GrantAsync();
    }

    public async Task ReturnUnused(string batchId, ImmutableArray<long> tokens, DateTimeOffset? notBefore)
    {
        Limiter.ReturnUnused(batchId, tokens, notBefore);
        await GrantAsync();
    }

    private PoolLimiter Limiter =>
        _limiter ?? throw new InvalidOperationException($"Pool '{Name}' does not exist; create it first.");

    private async Task StartLimiterAsync(PoolConfig config)
    {
        state.State.Epoch++;
        await state.WriteStateAsync();
        _limiter = new PoolLimiter(Name, config, state.State.Epoch, time);
        _limiter.RestoreCooldown(state.State.CooldownUntil);
    }

    private void EnsureTicking()
    {
        // Keeps the pool active while it has work, and wakes it for what no call announces: a
        // cooldown ending, the slow start ramping up, a batch's retries coming due, expired leases.
        _tick ??= this.RegisterGrainTimer(TickAsync, new GrainTimerCreationOptions(TickPeriod, TickPeriod) { KeepAlive = true });
    }

    private async Task TickAsync(CancellationToken cancellationToken)
    {
        var limiter = Limiter;
        var expired = limiter.ExpireLeases();
        if (expired > 0)
        {
            LogLeasesExpired(logger, Name, expired);
        }

        await GrantAsync();
        if (limiter.IsIdle)
        {
            _tick?.Dispose();
            _tick = null;
        }
    }

    private async Task GrantAsync()
    {
        foreach (var (batchId, leases) in Limiter.Grant())
        {
            await GrainFactory.GetGrain<IBatchGrain>(batchId).SlotsGranted([.. leases]);
        }
    }

    [LoggerMessage(EventId = 1001, Level = LogLevel.Information, Message = "Pool {Pool} configured: maxRunning {MaxRunning}, maxQueued {MaxQueued}")]
    private static partial void LogConfigured(ILogger logger, string pool, int maxRunning, long maxQueued);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Warning, Message = "Pool {Pool} cooling down until {Until:O} after a 429")]
    private static partial void LogCooldown(ILogger logger, string pool, DateTimeOffset until);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Debug, Message = "Pool {Pool} ignored the release of slot {Token} by batch {BatchId}: not held")]
    private static partial void LogUnknownRelease(ILogger logger, string pool, long token, string batchId);

    [LoggerMessage(EventId = 1004, Level = LogLevel.Warning, Message = "Pool {Pool} freed {Count} slot(s) whose leases expired")]
    private static partial void LogLeasesExpired(ILogger logger, string pool, int count);
}
