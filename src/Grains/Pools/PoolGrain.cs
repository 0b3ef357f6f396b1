using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using Nightshift.Batches;
using Nightshift.Diagnostics;
using Nightshift.Hosting;
using Nightshift.Items;
using Nightshift.Storage;
using Orleans.Storage;

namespace Nightshift.Pools;

[GenerateSerializer, Alias("nightshift.PoolGrainState")]
public sealed class PoolGrainState
{
    [Id(0)] public PoolConfig? Config { get; set; }

    /// <summary>Bumped by every activation; the high half of every fencing token it issues.</summary>
    [Id(1)] public long Epoch { get; set; }

    /// <summary>The last activation deactivated holding no slot, so the next one has nothing to recover.</summary>
    [Id(3)] public bool EndedClean { get; set; }

    /// <summary>Why the pool is paused (it grants nothing), or <c>null</c>.</summary>
    [Id(4)] public string? PausedReason { get; set; }

    /// <summary>The adaptive cap, waits and learned limits as of the last write (every heartbeat and every new hold).</summary>
    [Id(5)] public RateControlState? RateControl { get; set; }

    /// <summary>The batches the pool knew at the last heartbeat, so their queued items count from the start after a failover.</summary>
    [Id(6)] public List<KnownBatch>? Batches { get; set; }

    /// <summary>
    /// The slots held as of the last write: every heartbeat, and before any grant is sent when the pool is
    /// shared by processes, so a later activation knows every slot an earlier one may have handed out.
    /// <c>null</c> in a state an older version wrote.
    /// </summary>
    [Id(7)] public List<KnownSlot>? Slots { get; set; }

    /// <summary>The teams' limits in this pool, by team.</summary>
    [Id(8)] public Dictionary<string, LimitSpec>? TeamLimits { get; set; }

    /// <summary>The users' limits in this pool, by user.</summary>
    [Id(9)] public Dictionary<string, LimitSpec>? UserLimits { get; set; }
}

/// <summary>
/// The limiter grain: slot accounting lives in memory (<see cref="PoolLimiter"/>); the configuration,
/// the epoch, the rate control's state (adaptive cap, waits, learned limits), the batches and the slots
/// held are persisted, the last three with every heartbeat.
/// </summary>
/// <remarks>
/// Failover. Orleans' single activation is not strict while membership changes, so two activations
/// may briefly coexist. Each activation bumps the persisted epoch (optimistic concurrency on the
/// state's version) and writes a heartbeat every <see cref="HeartbeatPeriod"/>; the older one's write
/// then fails, and it stops granting. When processes share the store, grants are written ahead: the
/// slots held are saved before a grant is sent, so a superseded activation cannot grant at all, and a
/// new one after an unclean end counts every slot an earlier one handed out, until its holder takes it
/// over by renewing or its call cannot be running any more (<see cref="PoolLimiter.RestoreSlots"/>).
/// A holder paused with the pool's silo (SIGSTOP, a frozen VM) has its call counted that long, so the
/// cap holds as the provider sees it; the cluster grants again as soon as the new activation is up.
/// </remarks>
internal sealed partial class PoolGrain(
    [PersistentState(StorageNames.PoolState, StorageNames.Grains)] IPersistentState<PoolGrainState> state,
    IItemStore store,
    TimeProvider time,
    ILogger<PoolGrain> logger) : Grain, IPoolGrain
{
    private static readonly TimeSpan TickPeriod = TimeSpan.FromMilliseconds(200);

    private static readonly TimeSpan HeartbeatPeriod = TimeSpan.FromSeconds(2);

    /// <summary>How long a batch taken over from an earlier activation has to register again (live ones do every 5 s).</summary>
    private static readonly TimeSpan RejoinWithin = TimeSpan.FromSeconds(30);

    private PoolLimiter? _limiter;
    private IGrainTimer? _tick;
    private DateTimeOffset _lastHeartbeat;
    private bool _superseded;

    private string Name => this.GetPrimaryKeyString();

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (state.State.Config is { } config)
        {
            await StartLimiterAsync(config);
        }
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        PoolInstruments.Forget(Name);
        if (_limiter is { Running: 0 } && !_superseded)
        {
            state.State.EndedClean = true;
            state.State.RateControl = _limiter.Rate.Save();
            await state.WriteStateAsync(cancellationToken);
        }
    }

    public async Task Configure(PoolConfig config)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(config.MaxRunning, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(config.MaxQueued, 1);
        state.State.Config = config;

        // Configuring is how an operator answers a pause (a new key variable, the right deployment),
        // and how a run command starts again after one.
        state.State.PausedReason = null;
        await store.RegisterPoolAsync(Name, CancellationToken.None); // listed once configured; Configure has no token
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
            limiter.CooldownUntil, limiter.RateLimited, limiter.BatchCount, RuntimeIdentity, limiter.RecoveringUntil,
            limiter.RequestsLastMinute, limiter.TokensLastMinute, state.State.PausedReason, limiter.Rate.Snapshot()));
    }

    public async Task Pause(string reason)
    {
        _ = Limiter;
        await PauseAsync(reason);
        await GrantAsync();
    }

    public async Task Resume()
    {
        _ = Limiter;
        if (state.State.PausedReason is null)
        {
            return;
        }

        state.State.PausedReason = null;
        await state.WriteStateAsync();
        LogResumed(logger, Name);
        await GrantAsync();
    }

    public Task<QueueReservation> Reserve(string batchId, int itemCount, int priority)
    {
        var reservation = Limiter.Reserve(batchId, itemCount, priority);
        EnsureTicking();
        PublishFigures();
        return Task.FromResult(reservation);
    }

    public async Task Register(string batchId, long outstanding, int priority, TimeSpan attemptTimeout, int? maxRunning, BatchOwner? owner, string[]? models)
    {
        Limiter.Register(batchId, outstanding, priority, attemptTimeout, maxRunning, owner, models);
        EnsureTicking();
        await GrantAsync();
    }

    public async Task SetLimit(LimitScope scope, string name, LimitSpec? limit)
    {
        Limiter.Limits.Set(scope, name, limit);
        state.State.TeamLimits = new Dictionary<string, LimitSpec>(Limiter.Limits.Teams, StringComparer.Ordinal);
        state.State.UserLimits = new Dictionary<string, LimitSpec>(Limiter.Limits.Users, StringComparer.Ordinal);
        await state.WriteStateAsync();
        LogLimitSet(logger, Name, scope, name, limit?.MaxRunning);
        await GrantAsync();
    }

    public Task<ImmutableArray<LimitUsage>> GetLimits() => Task.FromResult(Limiter.LimitUsages());

    public async Task SetPaused(string batchId, bool paused)
    {
        Limiter.SetPaused(batchId, paused);
        await GrantAsync();
    }

    public async Task Remove(string batchId)
    {
        Limiter.Remove(batchId);
        await GrantAsync();
    }

    public Task Renew(ImmutableArray<LeaseRenewal> renewals)
    {
        var limiter = Limiter;
        foreach (var renewal in renewals)
        {
            if (limiter.Renew(renewal))
            {
                LogAdopted(logger, Name, renewal.Token, renewal.BatchId);
            }
        }

        EnsureTicking();
        return Task.CompletedTask;
    }

    public Task Release(ImmutableArray<SlotRelease> releases) => EndCallsAsync(releases, kept: false);

    public Task Kept(ImmutableArray<SlotRelease> releases) => EndCallsAsync(releases, kept: true);

    /// <summary>Takes in ended calls (freeing their slots, or holding them for their batch), persists a hold they started, and grants what they freed.</summary>
    private async Task EndCallsAsync(ImmutableArray<SlotRelease> releases, bool kept)
    {
        var limiter = Limiter;
        var cooldownBefore = limiter.CooldownUntil;
        foreach (var release in releases)
        {
            if (!(kept ? limiter.Kept(release) : limiter.Release(release)))
            {
                LogUnknownRelease(logger, Name, release.Token, release.BatchId);
            }

            if (release.PausePool is { } reason)
            {
                // In the same turn as the release, before the grant below: the freed slot must not go
                // to another item that would meet the same refusal.
                await PauseAsync(reason);
            }
        }

        EnsureTicking();
        if (limiter.CooldownUntil is { } until && until != cooldownBefore)
        {
            // Written at once, so an activation that takes over after a crash holds the wait too.
            LogCooldown(logger, Name, until);
            PoolInstruments.Cooldowns.Add(1, PoolInstruments.PoolTag(Name));
            state.State.RateControl = limiter.Rate.Save();
            await state.WriteStateAsync();
        }

        await GrantAsync();
    }

    public async Task ReturnUnused(string batchId, ImmutableArray<long> tokens, DateTimeOffset? notBefore)
    {
        Limiter.ReturnUnused(batchId, tokens, notBefore);
        await GrantAsync();
    }

    private async Task PauseAsync(string reason)
    {
        if (state.State.PausedReason is not null)
        {
            return;
        }

        state.State.PausedReason = reason;
        await state.WriteStateAsync();
        LogPaused(logger, Name, reason);
    }

    private PoolLimiter Limiter =>
        _limiter ?? throw new InvalidOperationException($"Pool '{Name}' does not exist; create it first.");

    private async Task StartLimiterAsync(PoolConfig config)
    {
        // An earlier activation that did not end clean may have granted slots whose calls still run
        // (on this silo's process only when the store outlives processes).
        var mayHaveHolders = state.State.Epoch > 0 && !state.State.EndedClean && !store.OwnedByOneProcess;
        state.State.Epoch++;
        state.State.EndedClean = false;
        if (!mayHaveHolders)
        {
            state.State.Slots = [];
        }

        await state.WriteStateAsync();
        _lastHeartbeat = time.GetUtcNow();
        _limiter = new PoolLimiter(Name, config, state.State.Epoch, time);
        if (state.State.RateControl is { } saved)
        {
            _limiter.Rate.Restore(saved);
        }

        if (state.State.Batches is { } batches)
        {
            _limiter.RestoreBatches(batches, RejoinWithin);
        }

        foreach (var (team, limit) in state.State.TeamLimits ?? [])
        {
            _limiter.Limits.Teams[team] = limit;
        }

        foreach (var (user, limit) in state.State.UserLimits ?? [])
        {
            _limiter.Limits.Users[user] = limit;
        }

        if (mayHaveHolders && state.State.Slots is { } slots)
        {
            // The last activation extended leases until its next heartbeat, which may have come late.
            _limiter.RestoreSlots(slots, HeartbeatPeriod + HeartbeatPeriod);
            LogTakenOver(logger, Name, state.State.Epoch, slots.Count);
            EnsureTicking();
        }
        else if (mayHaveHolders)
        {
            // Written by a version that did not save its slots: wait for the live holders to renew them.
            var window = RecoveryWindow(config);
            _limiter.BeginRecovery(window);
            LogRecovering(logger, Name, state.State.Epoch, window);
            EnsureTicking();
        }
    }

    /// <summary>
    /// For a state that holds no slots: long enough for every live holder to renew once (each renews a
    /// third of the way into its lease, checked every second) and for a superseded activation to miss its heartbeat.
    /// </summary>
    private static TimeSpan RecoveryWindow(PoolConfig config) =>
        (config.LeaseDuration / 3) + LeaseRenewer.CheckPeriod + LeaseRenewer.CheckPeriod + HeartbeatPeriod;

    private void EnsureTicking()
    {
        // Keeps the pool active while it has work, and wakes it for what no call announces: a
        // cooldown ending, the slow start ramping up, a batch's retries coming due, expired leases.
        _tick ??= this.RegisterGrainTimer(TickAsync, new GrainTimerCreationOptions(TickPeriod, TickPeriod) { KeepAlive = true });
    }

    private async Task TickAsync(CancellationToken cancellationToken)
    {
        if (!await HeartbeatAsync())
        {
            return;
        }

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

    /// <summary>Proves this activation is still the pool's newest; <c>false</c> when it was superseded.</summary>
    private async Task<bool> HeartbeatAsync()
    {
        if (_superseded)
        {
            return false;
        }

        if (time.GetUtcNow() - _lastHeartbeat < HeartbeatPeriod)
        {
            return true;
        }

        try
        {
            // Fenced on the state's version: fails once a newer activation has bumped the epoch.
            state.State.RateControl = Limiter.Rate.Save();
            await SaveAsync();
            return true;
        }
        catch (InconsistentStateException superseded)
        {
            StopAsSuperseded(superseded);
            return false;
        }
    }

    /// <summary>Writes the state with the batches and slots as they are now; fenced on the state's version.</summary>
    private async Task SaveAsync()
    {
        state.State.Batches = Limiter.SaveBatches();
        state.State.Slots = Limiter.SaveSlots();
        await state.WriteStateAsync();
        _lastHeartbeat = time.GetUtcNow();
    }

    private void StopAsSuperseded(InconsistentStateException superseded)
    {
        _superseded = true;
        PoolInstruments.Forget(Name);
        LogSuperseded(logger, superseded, Name, state.State.Epoch);
        _tick?.Dispose();
        _tick = null;
        DeactivateOnIdle();
    }

    private async Task GrantAsync()
    {
        if (_superseded)
        {
            return;
        }

        // Hot slots the pool wants back go first: their calls end on their own, and the slots then come
        // back here instead of starting another item.
        foreach (var (batchId, tokens) in Limiter.Revocations(state.State.PausedReason is not null))
        {
            await GrainFactory.GetGrain<IBatchGrain>(batchId).SlotsRevoked(Name, [.. tokens]);
        }

        if (state.State.PausedReason is not null)
        {
            return;
        }

        var grants = Limiter.Grant();
        if (grants.Count > 0 && !store.OwnedByOneProcess && !await WriteAheadAsync(grants))
        {
            return;
        }

        foreach (var (batchId, leases) in grants)
        {
            await GrainFactory.GetGrain<IBatchGrain>(batchId).SlotsGranted([.. leases]);
        }

        PublishFigures();
    }

    /// <summary>
    /// Saves the slots held, these grants included, before they are sent: an activation that takes over
    /// after a crash then counts every slot this one handed out. <c>false</c> when the grants must not go
    /// out: this activation was superseded, or the write failed (they are taken back; the next tick grants again).
    /// </summary>
    private async Task<bool> WriteAheadAsync(IReadOnlyList<(string BatchId, List<ItemLease> Leases)> grants)
    {
        try
        {
            await SaveAsync();
            return true;
        }
        catch (InconsistentStateException superseded)
        {
            StopAsSuperseded(superseded);
            return false;
        }
        catch (Exception failure)
        {
            LogWriteAheadFailed(logger, failure, Name, grants.Sum(grant => grant.Leases.Count));
            foreach (var (batchId, leases) in grants)
            {
                Limiter.ReturnUnused(batchId, leases.Select(lease => lease.Token), notBefore: null);
            }

            return false;
        }
    }

    /// <summary>Hands the gauges this activation's figures (slots held, items queued, the cap in force).</summary>
    private void PublishFigures()
    {
        if (_limiter is { } limiter && !_superseded)
        {
            PoolInstruments.Report(Name, limiter.Running, limiter.Queued, limiter.EffectiveCap);
        }
    }

    [LoggerMessage(EventId = 1001, Level = LogLevel.Information, Message = "Pool {Pool} configured: maxRunning {MaxRunning}, maxQueued {MaxQueued}")]
    private static partial void LogConfigured(ILogger logger, string pool, int maxRunning, long maxQueued);

    [LoggerMessage(EventId = 1002, Level = LogLevel.Warning, Message = "Pool {Pool} holds its grants until {Until:O}: a 429 said the quota is spent")]
    private static partial void LogCooldown(ILogger logger, string pool, DateTimeOffset until);

    [LoggerMessage(EventId = 1003, Level = LogLevel.Debug, Message = "Pool {Pool} ignored the release of slot {Token} by batch {BatchId}: not held")]
    private static partial void LogUnknownRelease(ILogger logger, string pool, long token, string batchId);

    [LoggerMessage(EventId = 1005, Level = LogLevel.Warning, Message = "Pool {Pool} activated as epoch {Epoch} after an unclean end: granting nothing for {Window} while live holders renew their leases")]
    private static partial void LogRecovering(ILogger logger, string pool, long epoch, TimeSpan window);

    [LoggerMessage(EventId = 1006, Level = LogLevel.Information, Message = "Pool {Pool} adopted lease {Token} of batch {BatchId} from its renewal")]
    private static partial void LogAdopted(ILogger logger, string pool, long token, string batchId);

    [LoggerMessage(EventId = 1007, Level = LogLevel.Warning, Message = "Pool {Pool} activation of epoch {Epoch} was superseded by a newer one; it stops granting")]
    private static partial void LogSuperseded(ILogger logger, Exception exception, string pool, long epoch);

    [LoggerMessage(EventId = 1008, Level = LogLevel.Error, Message = "Pool {Pool} paused: {Reason}")]
    private static partial void LogPaused(ILogger logger, string pool, string reason);

    [LoggerMessage(EventId = 1009, Level = LogLevel.Information, Message = "Pool {Pool} resumed")]
    private static partial void LogResumed(ILogger logger, string pool);

    [LoggerMessage(EventId = 1010, Level = LogLevel.Warning, Message = "Pool {Pool} activated as epoch {Epoch} after an unclean end: it counts the {Count} slot(s) the last one saved until their holders renew them or their calls are past their deadline")]
    private static partial void LogTakenOver(ILogger logger, string pool, long epoch, int count);

    [LoggerMessage(EventId = 1011, Level = LogLevel.Error, Message = "Pool {Pool} could not save {Count} grant(s) before sending them; they are taken back and granted again later")]
    private static partial void LogWriteAheadFailed(ILogger logger, Exception exception, string pool, int count);

    [LoggerMessage(EventId = 1013, Level = LogLevel.Information, Message = "Pool {Pool}: the {Scope} {Name}'s limit is now {MaxRunning} calls at once (none: removed, or only per model)")]
    private static partial void LogLimitSet(ILogger logger, string pool, LimitScope scope, string name, int? maxRunning);

    [LoggerMessage(EventId = 1004, Level = LogLevel.Warning, Message = "Pool {Pool} freed {Count} slot(s) whose leases expired")]
    private static partial void LogLeasesExpired(ILogger logger, string pool, int count);
}
