using System.Collections.Immutable;
using System.Diagnostics.CodeAnalysis;
using Microsoft.Extensions.Logging;
using Nightshift.Hosting;
using Nightshift.Items;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Recovery;
using Nightshift.Storage;

namespace Nightshift.Batches;

[GenerateSerializer, Alias("nightshift.BatchGrainState")]
public sealed class BatchGrainState
{
    [Id(0)] public BatchSpec? Spec { get; set; }

    [Id(1)] public BatchState State { get; set; }

    [Id(2)] public DateTimeOffset CreatedAt { get; set; }

    [Id(3)] public DateTimeOffset? FinishedAt { get; set; }

    /// <summary>Bumped by every activation that dispatches; the high half of every claim token it issues.</summary>
    [Id(4)] public long Epoch { get; set; }

    /// <summary>Runs before this one (each retry starts another): the key of each run's webhook delivery.</summary>
    [Id(5)] public int Runs { get; set; }
}

/// <summary>
/// One batch. Persists only its spec and state; its counters are rebuilt from the item store on
/// activation and kept in memory after that, so finishing an item costs no grain-state write. The
/// dispatch cycle's decisions are its <see cref="SlotDispatcher"/>'s; the grain does the store calls and
/// the messaging they ask for.
/// </summary>
[SuppressMessage("Design", "CA1001", Justification = "Its token source has no timer and no wait handle: nothing to free, and a claim may still read it after deactivation.")]
internal sealed partial class BatchGrain(
    [PersistentState(StorageNames.BatchState, StorageNames.Grains)] IPersistentState<BatchGrainState> state,
    IItemStore store,
    LeaseRenewer renewer,
    TimeProvider time,
    ILogger<BatchGrain> logger) : Grain, IBatchGrain, IRemindable
{
    /// <summary>
    /// The reminder a running (or paused) batch holds: it survives restarts of the whole cluster and
    /// reactivates the batch, whose activation re-dispatches what the crash interrupted.
    /// </summary>
    private const string ResumeReminder = "resume";

    private static readonly TimeSpan ResumePeriod = TimeSpan.FromMinutes(1);

    /// <summary>
    /// How often a live batch requeues items whose lease died (their silo died) and re-registers
    /// with its pool (which has forgotten it if it failed over).
    /// </summary>
    private static readonly TimeSpan MaintenancePeriod = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long the ends of calls on kept slots gather before they go to the pool in one message. The pool
    /// needs them for its rate figures and to extend the slots' leases, not to start anything.
    /// </summary>
    private static readonly TimeSpan KeptReportDelay = TimeSpan.FromMilliseconds(50);

    /// <summary>Items claimed and not yet reported, under their claim tokens (the items claimed ahead among them).</summary>
    private readonly Dictionary<int, long> _inFlight = [];

    /// <summary>Cancelled as the activation deactivates: its store calls still waiting are withdrawn.</summary>
    private readonly CancellationTokenSource _deactivating = new();

    /// <summary>Messages and store calls the dispatch cycle sent and nothing awaits; a deactivation waits for them.</summary>
    private readonly HashSet<Task> _sent = [];
    /// <summary>The grains of the items claimed ahead, made when they were prepared and used when they start.</summary>
    private readonly Dictionary<int, IItemGrain> _prepared = [];
    private BatchRecovery? _recovery;

    /// <summary>The pools the batch dispatches on, by stage: its own, then its escalation list's. Empty until it joins them.</summary>
    private PoolLane[] _lanes = [];
    private long _pending;
    private long _succeeded;
    private long _failed;
    private long _cancelled;
    private long _inputTokens;
    private long _outputTokens;
    private long _cachedTokens;
    private IGrainTimer? _maintenance;
    private IGrainReminder? _resume;

    private string Id => this.GetPrimaryKeyString();

    private BatchSpec Spec => state.State.Spec ?? throw new InvalidOperationException($"Batch '{Id}' was never started.");

    private BatchRecovery Recovery => _recovery ??= new BatchRecovery(store, Id, time, logger);

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if ((!state.RecordExists || state.State.Spec is null) && !await StartFromCatalogueAsync(cancellationToken))
        {
            return;
        }

        var (counts, running) = await Recovery.RecoverAsync(cancellationToken);

        // Calls still running on live silos report to this activation: expect them under their tokens.
        foreach (var leased in running)
        {
            _inFlight[leased.Index] = leased.LeaseToken ?? 0;
        }

        _pending = counts.Pending + counts.Leased - _inFlight.Count;
        _succeeded = counts.Succeeded;
        _failed = counts.Failed;
        _cancelled = counts.Cancelled;
        _inputTokens = counts.InputTokens;
        _outputTokens = counts.OutputTokens;
        _cachedTokens = counts.CachedTokens;
        if (state.State.State is BatchState.Running or BatchState.Paused)
        {
            // A new epoch before the first claim: this activation's claim tokens differ from every earlier one's.
            state.State.Epoch++;
            await state.WriteStateAsync(cancellationToken);
            await JoinPoolAsync();
        }
    }

    /// <summary>
    /// A batch whose items were committed (checkpoint 1) but whose grain was never started (its submitter
    /// died before checkpoint 2) starts from the spec the catalogue holds with them. <c>false</c> when
    /// there is no such batch.
    /// </summary>
    private async Task<bool> StartFromCatalogueAsync(CancellationToken cancellationToken)
    {
        if (await store.GetBatchAsync(Id, cancellationToken) is not { Options: { } options, Record: { State: BatchState.Running } record })
        {
            return false;
        }

        state.State.Spec = new BatchSpec(record.Pool, record.ItemCount, options);
        state.State.State = BatchState.Running;
        state.State.CreatedAt = record.CreatedAt;
        LogStartedFromCatalogue(logger, Id, record.Pool, record.ItemCount);
        return true;
    }

    public Task ReceiveReminder(string reminderName, TickStatus status)
    {
        // Receiving it was the point: this activation has already rejoined its pool (OnActivateAsync).
        LogReminder(logger, Id, state.State.State);
        return Task.CompletedTask;
    }

    public async Task Start(BatchSpec spec)
    {
        if (state.State.Spec is not null)
        {
            return;
        }

        state.State.Spec = spec;
        state.State.State = BatchState.Running;
        state.State.CreatedAt = time.GetUtcNow();
        state.State.Epoch++;
        await state.WriteStateAsync();
        _pending = spec.ItemCount;
        LogStarted(logger, Id, spec.Pool, spec.ItemCount);
        await JoinPoolAsync();
    }

    public Task<BatchStatus> GetStatus()
    {
        if (state.State.Spec is not { } spec)
        {
            DeactivateOnIdle();
            return Task.FromResult(new BatchStatus { BatchId = Id, State = BatchState.NotFound });
        }

        return Task.FromResult(new BatchStatus
        {
            BatchId = Id,
            State = state.State.State,
            Pool = spec.Pool,
            Total = spec.ItemCount,
            Pending = _pending + Ready,
            Running = _inFlight.Count - Ready,
            Succeeded = _succeeded,
            Failed = _failed,
            Cancelled = _cancelled,
            InputTokens = _inputTokens,
            OutputTokens = _outputTokens,
            CachedTokens = _cachedTokens,
            CreatedAt = state.State.CreatedAt,
            FinishedAt = state.State.FinishedAt,
            Silo = RuntimeIdentity,
        });
    }

    public Task SlotsGranted(ImmutableArray<ItemLease> leases)
    {
        // One pool grants them all: its own slots.
        if (leases.IsEmpty)
        {
            return Task.CompletedTask;
        }

        var pool = leases[0].Pool;
        if (Lane(pool) is { } lane)
        {
            Apply(lane, lane.Dispatcher.Granted(leases));
        }
        else
        {
            Send(GrainFactory.GetGrain<IPoolGrain>(pool).ReturnUnused(Id, [.. leases.Select(lease => lease.Token)], null));
        }

        return Task.CompletedTask;
    }

    public Task SlotsRevoked(string pool, ImmutableArray<long> tokens)
    {
        if (Lane(pool) is { } lane)
        {
            Apply(lane, lane.Dispatcher.Revoked(tokens));
        }

        return Task.CompletedTask;
    }

    /// <summary>The lane of <paramref name="pool"/>, or <c>null</c> when the batch does not (or no longer) dispatch on it.</summary>
    private PoolLane? Lane(string pool)
    {
        // A loop, not a lambda: every report asks, and most batches have one lane.
        foreach (var lane in _lanes)
        {
            if (lane.Pool == pool)
            {
                return lane;
            }
        }

        return null;
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        // What this activation holds and does not use goes back (slots to the pool, items claimed ahead to
        // pending; a claim still out gives back what it brings) before it goes. Their renewals stop at
        // once, so if the silo cannot wait, their leases expire and the pool and the store take them back.
        StopDispatching();

        // A claim still waiting for its group is withdrawn: the deactivation does not wait for it.
        await _deactivating.CancelAsync();
        try
        {
            await Task.WhenAll(_lanes.Select(lane => lane.Claiming)).WaitAsync(cancellationToken);
            await Task.WhenAll([.. _sent, .. _lanes.Select(lane => lane.ReportingKept)]).WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            LogDispatchAbandoned(logger, Id, Ready);
        }
    }

    private int Ready => _lanes.Sum(lane => lane.Dispatcher.Ready);

    private IItemGrain Item(int index) => GrainFactory.GetGrain<IItemGrain>(ItemKey.Format(Id, index));

    /// <summary>Does what a lane's dispatch step asks: starts items, frees and returns slots, gives back items, claims more.</summary>
    private void Apply(PoolLane lane, DispatchPlan plan)
    {
        foreach (var start in plan.Starts)
        {
            StartItem(lane, start);
        }

        if (plan.Unused.Count > 0)
        {
            Send(lane.Grain.ReturnUnused(Id, [.. plan.Unused], plan.UnusedNotBefore));
        }

        if (plan.Releases.Count > 0)
        {
            Send(lane.Grain.Release([.. plan.Releases]));
        }

        if (plan.Kept.Count > 0)
        {
            lane.Kept.AddRange(plan.Kept);
            if (lane.ReportingKept.IsCompleted)
            {
                lane.ReportingKept = ReportKeptAsync(lane);
            }
        }

        if (plan.Unclaim.Count > 0)
        {
            Send(UnclaimAsync(plan.Unclaim));
        }

        if (lane.Claiming.IsCompleted && lane.Dispatcher.NextClaim() is { } leases)
        {
            lane.Claiming = ClaimAsync(lane, leases);
        }
    }

    private void StartItem(PoolLane lane, SlotStart start)
    {
        var item = start.Item;
        // A claim the renewer no longer holds was lost while it waited for its slot (the store took it
        // back, or this silo was paused for a whole lease): its item grain gives it back without calling.
        var renewedAt = renewer.Drop(Id, item.Lease.Token) ?? DateTimeOffset.MinValue;
        var assignment = new ItemAssignment(Id, item.Index, item.CustomId, item.Body, item.Attempts, item.RateLimitedAttempts, item.Lease,
            Spec.Options, lane.Model, start.Slot, renewedAt, item.RetryState, lane.Stage, state.State.Runs);

        _ = (_prepared.Remove(item.Index, out var grain) ? grain : Item(item.Index)).Start(assignment);
    }

    /// <summary>
    /// Claims what the dispatcher asks for, again and again while it asks: the claim runs beside this grain's
    /// other calls, never inside one of its turns, so reports keep flowing while the store answers, and every
    /// slot freed meanwhile goes into the next claim (one statement for all of them).
    /// </summary>
    private async Task ClaimAsync(PoolLane lane, IReadOnlyList<ItemLease> leases)
    {
        var dispatcher = lane.Dispatcher;
        for (IReadOnlyList<ItemLease>? next = leases; next is not null; next = dispatcher.NextClaim())
        {
            DispatchPlan plan;
            try
            {
                // Checkpoint 3: the claimed items are leased under this activation's claim tokens, renewed
                // while it lives. A crash from here to checkpoint 7 leaves them leased until their
                // claim expires, and lease expiry (Recovery/BatchRecovery) puts them back to pending.
                var claimed = await store.ClaimAsync(Id, lane.Stage, next, time.GetUtcNow(), _deactivating.Token);
                CountClaimed(claimed);
                var nextDue = claimed.Count < next.Count ? await store.NextDueAsync(Id, lane.Stage, _deactivating.Token) : null;
                Prepare(claimed);
                plan = dispatcher.Claimed(next.Count, claimed, nextDue);
            }
            catch (OperationCanceledException) when (_deactivating.IsCancellationRequested)
            {
                plan = dispatcher.ClaimFailed();
            }
            catch (Exception failure)
            {
                // Nothing was claimed (or what was claimed expires and is requeued): the free slots go back.
                LogDispatchFailed(logger, failure, Id, next.Count);
                plan = dispatcher.ClaimFailed();
            }

            Apply(lane, plan);
        }
    }

    /// <summary>Counts claimed items in flight; their claims are renewed until they start.</summary>
    private void CountClaimed(IReadOnlyList<ClaimedItem> claimed)
    {
        var now = time.GetUtcNow();
        foreach (var item in claimed)
        {
            if (_inFlight.ContainsKey(item.Index))
            {
                // The store has the item pending again, so its previous attempt ended in a retry whose
                // report has not reached us yet; count it as reported (the late report is then stale).
                _pending++;
            }

            _inFlight[item.Index] = item.Lease.Token;
            _pending--;
            renewer.Hold(Id, item.Index, item.Lease, slot: null, now);
        }
    }

    /// <summary>
    /// Activates the claimed items' grains before a slot is free for them: an activation takes milliseconds,
    /// which would otherwise come between every call's end and the next call's start.
    /// </summary>
    private void Prepare(IReadOnlyList<ClaimedItem> claimed)
    {
        foreach (var item in claimed)
        {
            _ = (_prepared[item.Index] = Item(item.Index)).Prepare();
        }
    }

    /// <summary>Puts items claimed ahead and never started back to pending, as if never claimed.</summary>
    private async Task UnclaimAsync(IReadOnlyList<ClaimedItem> items)
    {
        foreach (var item in items)
        {
            renewer.Drop(Id, item.Lease.Token);
            _prepared.Remove(item.Index);
            if (_inFlight.GetValueOrDefault(item.Index) == item.Lease.Token)
            {
                _inFlight.Remove(item.Index);
                _pending++;
            }
        }

        // Never withdrawn: a deactivating batch gives back what it claimed ahead rather than leave it to expire.
        foreach (var item in items)
        {
            await store.ReleaseLeaseAsync(Id, item.Index, item.Lease.Token, interrupted: false, CancellationToken.None);
        }
    }

    /// <summary>Reports the ends of calls on a lane's kept slots to its pool, gathered over <see cref="KeptReportDelay"/>.</summary>
    private async Task ReportKeptAsync(PoolLane lane)
    {
        await Task.Delay(KeptReportDelay, time);
        while (lane.Kept.Count > 0)
        {
            ImmutableArray<SlotRelease> kept = [.. lane.Kept];
            lane.Kept.Clear();
            try
            {
                await lane.Grain.Kept(kept);
            }
            catch (Exception failure)
            {
                // The slots' leases are renewed by their calls; only these calls' figures are lost.
                LogKeptReportFailed(logger, failure, Id, kept.Length);
            }
        }
    }

    /// <summary>Sends a message or store call nothing waits for, logging its failure.</summary>
    private void Send(Task sent)
    {
        if (sent.IsCompleted && !sent.IsFaulted)
        {
            return;
        }

        _sent.Add(sent);
        _ = ObserveAsync(sent);

        async Task ObserveAsync(Task task)
        {
            try
            {
                await task;
            }
            catch (Exception failure)
            {
                LogSendFailed(logger, failure, Id);
            }
            finally
            {
                _sent.Remove(task);
            }
        }
    }

    public async Task ItemFinished(ItemReport report, SlotRelease? hotSlot)
    {
        var pool = report.Pool ?? Spec.Pool;
        var lane = Lane(pool);
        if (hotSlot is not null)
        {
            if (lane is null)
            {
                Send(GrainFactory.GetGrain<IPoolGrain>(pool).Release([hotSlot]));
            }
            else
            {
                Apply(lane, lane.Dispatcher.Freed(hotSlot));
            }
        }

        if (!_inFlight.TryGetValue(report.Index, out var token) || token != report.LeaseToken)
        {
            LogStaleReport(logger, Id, report.Index, report.LeaseToken);
            return;
        }

        _inFlight.Remove(report.Index);
        lane?.Dispatcher.Finished(report.Index);
        Count(report.Outcome, new TokenUsage(report.InputTokens, report.OutputTokens, report.CachedTokens));
        if (lane is not null && _lanes.Length > 1)
        {
            MoveBetweenLanes(lane, report);
        }

        await FinishIfDoneAsync();
    }

    /// <summary>
    /// Keeps the lanes' counts of unfinished items: an item that ended leaves its lane; one escalated after a
    /// validation failure moves to its next lane, whose pool hears of it at once (its first item may be this one).
    /// </summary>
    private void MoveBetweenLanes(PoolLane ranOn, ItemReport report)
    {
        if (report.Outcome is ItemOutcome.Succeeded or ItemOutcome.Failed or ItemOutcome.Cancelled)
        {
            ranOn.Unfinished--;
        }
        else if (report.Outcome == ItemOutcome.Retrying && report.Stage != ranOn.Stage && report.Stage < _lanes.Length)
        {
            ranOn.Unfinished--;
            _lanes[report.Stage].Unfinished++;
            if (state.State.State is BatchState.Running or BatchState.Paused)
            {
                Register(_lanes[report.Stage]);
            }
        }
    }

    public async Task Pause()
    {
        EnsureNotFinished("pause");
        if (state.State.State == BatchState.Paused)
        {
            return;
        }

        state.State.State = BatchState.Paused;
        await SaveStateAsync();
        StopDispatching();
        await Task.WhenAll(_lanes.Select(lane => lane.Grain.SetPaused(Id, true)));
    }

    public async Task Resume()
    {
        EnsureNotFinished("resume");
        if (state.State.State == BatchState.Running)
        {
            return;
        }

        state.State.State = BatchState.Running;
        await SaveStateAsync();
        foreach (var lane in _lanes)
        {
            lane.Dispatcher.Dispatching = true;
        }

        await Task.WhenAll(_lanes.Select(lane => lane.Grain.SetPaused(Id, false)));
    }

    public async Task Cancel()
    {
        if (state.State.State == BatchState.Cancelled)
        {
            return;
        }

        EnsureNotFinished("cancel");
        state.State.State = BatchState.Cancelled;
        await SaveStateAsync();
        await LeavePoolsAsync();

        // A claim running now may still take items; they must be back to pending before the pending items
        // are cancelled, and the aborts go out to every item started.
        StopDispatching();
        await Task.WhenAll(_lanes.Select(lane => lane.Claiming));
        await Task.WhenAll(_sent);
        // The cancel a caller asked for, already persisted in the grain's state: it must reach the items.
        var cancelled = await store.CancelPendingAsync(Id, CancellationToken.None);
        _pending -= cancelled;
        _cancelled += cancelled;
        await Task.WhenAll(_inFlight.Keys.Select(index => Item(index).Abort()));
        await FinishIfDoneAsync();
    }

    /// <summary>Starts nothing more; the slots and items the batch holds unused go back.</summary>
    private void StopDispatching()
    {
        foreach (var lane in _lanes)
        {
            lane.Dispatcher.Dispatching = false;
            Apply(lane, lane.Dispatcher.Drain());
        }
    }

    /// <summary>Tells every pool the batch dispatches on that it wants no more slots.</summary>
    private Task LeavePoolsAsync() => Task.WhenAll(_lanes.Select(lane => lane.Grain.Remove(Id)));

    /// <summary>Writes the batch's state to its grain state and to the store's catalogue (which lists batches by state).</summary>
    private async Task SaveStateAsync()
    {
        await state.WriteStateAsync();

        // The catalogue follows the grain state just written; grain methods have no token to forward.
        await store.SetBatchStateAsync(Id, state.State.State, state.State.FinishedAt, CancellationToken.None);
    }

    public async Task<int> Retry(ItemRetryFilter filter, string? pool)
    {
        var spec = state.State.Spec ?? throw new KeyNotFoundException($"Batch '{Id}' does not exist.");
        if (state.State.FinishedAt is null)
        {
            throw new InvalidOperationException($"Batch '{Id}' is {state.State.State.ToString().ToLowerInvariant()}; retry it once it has finished.");
        }

        var target = pool ?? spec.Pool;
        if (target != spec.Pool && await GrainFactory.GetGrain<IPoolGrain>(target).GetConfig() is null)
        {
            throw new ArgumentException($"pool '{target}' does not exist", nameof(pool));
        }

        // As at submission: a batch's own pool is never one it escalates to (one pool, one lane).
        if (spec.Options.Escalate?.Contains(target, StringComparer.Ordinal) == true)
        {
            throw new ArgumentException($"pool '{target}' is one of the batch's escalation pools ({string.Join(", ", spec.Options.Escalate)}); retry on another", nameof(pool));
        }

        // Running again, written before the items are: a crash between the two leaves a running batch with nothing
        // to run, which its next activation finishes again, never items pending in a batch that says it finished.
        // A new epoch, so this run's claim tokens differ from the last run's.
        var finished = (state.State.State, state.State.FinishedAt);
        state.State.Spec = spec with { Pool = target };
        state.State.State = BatchState.Running;
        state.State.FinishedAt = null;
        state.State.Epoch++;
        state.State.Runs++;
        await SaveStateAsync();
        int requeued;
        try
        {
            requeued = await store.RequeueTerminalAsync(Id, filter, target == spec.Pool ? null : target, CancellationToken.None);
        }
        catch
        {
            await UndoRunAsync();
            throw;
        }

        if (requeued == 0)
        {
            await UndoRunAsync();
            return 0;
        }

        var counts = await store.CountAsync(Id, CancellationToken.None);
        (_pending, _succeeded, _failed, _cancelled) = (counts.Pending, counts.Succeeded, counts.Failed, counts.Cancelled);
        LogRetried(logger, Id, requeued, target);
        await JoinPoolAsync();
        return requeued;

        // Nothing was requeued: the batch stays finished as it was, and the run that did not start is not counted.
        async Task UndoRunAsync()
        {
            state.State.Spec = spec;
            (state.State.State, state.State.FinishedAt) = finished;
            state.State.Runs--;
            await SaveStateAsync();
        }
    }

    private void EnsureNotFinished(string action)
    {
        if (state.State.State is BatchState.Cancelled or BatchState.Completed)
        {
            throw new InvalidOperationException($"Batch '{Id}' is {state.State.State.ToString().ToLowerInvariant()}; it cannot {action}.");
        }

        if (state.State.Spec is null)
        {
            throw new KeyNotFoundException($"Batch '{Id}' does not exist.");
        }
    }

    /// <summary>Joins the batch's pool and those of its escalation list, a lane each, and registers with them.</summary>
    private async Task JoinPoolAsync()
    {
        var tokens = new ClaimTokens(state.State.Epoch);
        string[] pools = [Spec.Pool, .. Spec.Options.Escalate ?? []];
        var lanes = new PoolLane[pools.Length];
        for (var stage = 0; stage < pools.Length; stage++)
        {
            var grain = GrainFactory.GetGrain<IPoolGrain>(pools[stage]);
            var config = await grain.GetConfig() ?? new PoolConfig();
            var dispatcher = new SlotDispatcher(pools[stage], tokens, time)
            {
                Dispatching = state.State.State == BatchState.Running,
                LeaseDuration = config.LeaseDuration,
            };
            lanes[stage] = new PoolLane(stage, pools[stage], grain, dispatcher, config.Model);
        }

        _lanes = lanes;
        await CountLanesAsync();
        _maintenance ??= this.RegisterGrainTimer(MaintainAsync,
            new GrainTimerCreationOptions(MaintenancePeriod, MaintenancePeriod) { KeepAlive = true });
        if (state.State.FinishedAt is null)
        {
            _resume ??= await this.RegisterOrUpdateReminder(ResumeReminder, ResumePeriod, ResumePeriod);
        }

        await Task.WhenAll(_lanes.Select(RegisterAsync));
        await FinishIfDoneAsync();
    }

    /// <summary>In a batch of several lanes, each lane's unfinished items as the store counts them.</summary>
    private async Task CountLanesAsync()
    {
        if (_lanes.Length < 2)
        {
            return;
        }

        var unfinished = await store.CountUnfinishedByStageAsync(Id, CancellationToken.None);
        foreach (var lane in _lanes)
        {
            lane.Unfinished = unfinished.GetValueOrDefault(lane.Stage);
        }
    }

    /// <summary>Registers a lane with its pool unless a registration is out; nothing waits for it.</summary>
    private void Register(PoolLane lane)
    {
        if (lane.Registering.IsCompleted)
        {
            lane.Registering = RegisterAsync(lane);
            Send(lane.Registering);
        }
    }

    /// <summary>
    /// Tells a lane's pool what the batch has outstanding on it, and whether it is paused; again while the lane's
    /// count grew meanwhile (items escalated to it), so its pool grants for all of them.
    /// </summary>
    private async Task RegisterAsync(PoolLane lane)
    {
        long registered;
        do
        {
            registered = _lanes.Length == 1 ? _pending + _inFlight.Count : lane.Unfinished;

            // The models a batch's lines name count its calls under their limits, in its own pool only.
            await lane.Grain.Register(Id, registered, Spec.Options.Priority, Spec.Options.AttemptTimeout, Spec.Options.MaxRunning, Spec.Options.Owner,
                lane.Stage == 0 ? Spec.Options.CountedModels() : null);
            if (state.State.State == BatchState.Paused)
            {
                await lane.Grain.SetPaused(Id, true);
            }
        }
        while (_lanes.Length > 1 && lane.Unfinished > registered);
    }

    private async Task MaintainAsync(CancellationToken cancellationToken)
    {
        if (state.State.FinishedAt is not null)
        {
            return;
        }

        foreach (var item in await Recovery.RequeueExpiredAsync(_inFlight, cancellationToken))
        {
            foreach (var lane in _lanes)
            {
                lane.Dispatcher.Forget(item.Index);
            }

            _prepared.Remove(item.Index);
            Count(item.Failed ? ItemOutcome.Failed : ItemOutcome.Retrying, default);
        }

        foreach (var (item, outcome) in await Recovery.ReconcileAsync(_inFlight, cancellationToken))
        {
            Count(outcome, new TokenUsage(item.InputTokens, item.OutputTokens, item.CachedTokens));
        }

        if (state.State.State is BatchState.Running or BatchState.Paused)
        {
            await CountLanesAsync();

            // Not awaited: while a pool's silo is paused or cut off (until it is declared dead and the
            // pool moves), this batch goes on running its items on the slots it keeps.
            foreach (var lane in _lanes)
            {
                Register(lane);
            }
        }

        await FinishIfDoneAsync();
    }

    /// <summary>Counts an item's outcome; a terminal item's tokens count as the store sums them (a refused completion is billed too).</summary>
    private void Count(ItemOutcome outcome, TokenUsage usage)
    {
        switch (outcome)
        {
            case ItemOutcome.Succeeded:
                _succeeded++;
                AddTokens(usage);
                break;
            case ItemOutcome.Failed:
                _failed++;
                AddTokens(usage);
                break;
            case ItemOutcome.Cancelled:
                _cancelled++;
                break;
            case ItemOutcome.Retrying:
            case ItemOutcome.Fenced:
                _pending++;
                break;
        }
    }

    private void AddTokens(TokenUsage usage)
    {
        _inputTokens += usage.InputTokens;
        _outputTokens += usage.OutputTokens;
        _cachedTokens += usage.CachedTokens;
    }

    private async Task FinishIfDoneAsync()
    {
        if (_inFlight.Count > 0 || state.State.FinishedAt is not null)
        {
            return;
        }

        var current = state.State.State;
        if (current == BatchState.Cancelled || (current is BatchState.Running or BatchState.Paused && _pending == 0))
        {
            if (current != BatchState.Cancelled)
            {
                state.State.State = BatchState.Completed;
                await LeavePoolsAsync();
            }
            else
            {
                // An attempt whose call had returned before the abort reached it may have recorded a retry after the
                // cancel cancelled the items pending then (or maintenance requeued an expired claim): such an item is
                // cancelled now, or it would stay pending for ever. Nothing is in flight, so nothing is pending after.
                _cancelled += await store.CancelPendingAsync(Id, CancellationToken.None);
                _pending = 0;
            }

            state.State.FinishedAt = time.GetUtcNow();
            if (Spec.Options.CallbackUrl is { } url)
            {
                // Before the state says finished: a crash in between finishes this run again, and finds its delivery there.
                var ending = new WebhookDelivery(Id, state.State.Runs, $"batch.{state.State.State.ToString().ToLowerInvariant()}", url, 0, state.State.FinishedAt.Value);
                await store.EnqueueWebhookAsync(ending, CancellationToken.None);
            }

            await SaveStateAsync();
            _maintenance?.Dispose();
            _maintenance = null;
            if ((_resume ?? await this.GetReminder(ResumeReminder)) is { } resume)
            {
                await this.UnregisterReminder(resume);
                _resume = null;
            }

            LogFinished(logger, Id, state.State.State, _succeeded, _failed, _cancelled);
        }
    }

    [LoggerMessage(EventId = 2001, Level = LogLevel.Information, Message = "Batch {BatchId} started on pool {Pool} with {Count} items")]
    private static partial void LogStarted(ILogger logger, string batchId, string pool, int count);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "Batch {BatchId} {State}: {Succeeded} succeeded, {Failed} failed, {Cancelled} cancelled")]
    private static partial void LogFinished(ILogger logger, string batchId, BatchState state, long succeeded, long failed, long cancelled);

    // Information, not a warning: a batch is also activated between its commit and its submitter's Start by the start-up
    // resumer or a status poll (a `run` often logged it), which is as harmless as the submitter's death it also covers.
    [LoggerMessage(EventId = 2011, Level = LogLevel.Information, Message = "Batch {BatchId} started from the catalogue on pool {Pool} with {Count} items (activated before its submitter started it, or after the submitter died)")]
    private static partial void LogStartedFromCatalogue(ILogger logger, string batchId, string pool, int count);

    [LoggerMessage(EventId = 2012, Level = LogLevel.Information, Message = "Batch {BatchId} runs again: {Count} items back to pending, on pool {Pool}")]
    private static partial void LogRetried(ILogger logger, string batchId, int count, string pool);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Debug, Message = "Batch {BatchId} woken by its resume reminder while {State}")]
    private static partial void LogReminder(ILogger logger, string batchId, BatchState state);

    [LoggerMessage(EventId = 2007, Level = LogLevel.Warning, Message = "Batch {BatchId} could not hand {Count} granted slots to items; their leases will expire")]
    private static partial void LogDispatchFailed(ILogger logger, Exception failure, string batchId, int count);

    [LoggerMessage(EventId = 2009, Level = LogLevel.Warning, Message = "Batch {BatchId} could not report {Count} calls on kept slots to its pool")]
    private static partial void LogKeptReportFailed(ILogger logger, Exception failure, string batchId, int count);

    [LoggerMessage(EventId = 2010, Level = LogLevel.Warning, Message = "Batch {BatchId}: a message or store call of its dispatch failed; what it concerned is recovered when its leases expire")]
    private static partial void LogSendFailed(ILogger logger, Exception failure, string batchId);

    [LoggerMessage(EventId = 2008, Level = LogLevel.Warning, Message = "Batch {BatchId} deactivated with {Count} items claimed ahead not given back; their leases will expire")]
    private static partial void LogDispatchAbandoned(ILogger logger, string batchId, int count);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Debug, Message = "Batch {BatchId} ignored a report for item {Index} under lease {Token}: not the item's current lease")]
    private static partial void LogStaleReport(ILogger logger, string batchId, int index, long token);
}
