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

    /// <summary>Ends of calls on kept slots, not yet reported to the pool.</summary>
    private readonly List<SlotRelease> _kept = [];

    /// <summary>Messages and store calls the dispatch cycle sent and nothing awaits; a deactivation waits for them.</summary>
    private readonly HashSet<Task> _sent = [];
    /// <summary>The grains of the items claimed ahead, made when they were prepared and used when they start.</summary>
    private readonly Dictionary<int, IItemGrain> _prepared = [];
    private IPoolGrain? _pool;
    private BatchRecovery? _recovery;
    private SlotDispatcher? _dispatcher;
    private Task _claiming = Task.CompletedTask;
    private Task _reportingKept = Task.CompletedTask;
    private Task _registering = Task.CompletedTask;
    private ModelBinding _model = new();
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

    private IPoolGrain Pool => _pool ??= GrainFactory.GetGrain<IPoolGrain>(Spec.Pool);

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
        if (_dispatcher is null)
        {
            Send(Pool.ReturnUnused(Id, [.. leases.Select(lease => lease.Token)], null));
            return Task.CompletedTask;
        }

        Apply(_dispatcher.Granted(leases));
        return Task.CompletedTask;
    }

    public Task SlotsRevoked(ImmutableArray<long> tokens)
    {
        if (_dispatcher is not null)
        {
            Apply(_dispatcher.Revoked(tokens));
        }

        return Task.CompletedTask;
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
            await _claiming.WaitAsync(cancellationToken);
            await Task.WhenAll([.. _sent, _reportingKept]).WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            LogDispatchAbandoned(logger, Id, _dispatcher?.Ready ?? 0);
        }
    }

    private int Ready => _dispatcher?.Ready ?? 0;

    private IItemGrain Item(int index) => GrainFactory.GetGrain<IItemGrain>(ItemKey.Format(Id, index));

    /// <summary>Does what a dispatch step asks: starts items, frees and returns slots, gives back items, claims more.</summary>
    private void Apply(DispatchPlan plan)
    {
        foreach (var start in plan.Starts)
        {
            StartItem(start);
        }

        if (plan.Unused.Count > 0)
        {
            Send(Pool.ReturnUnused(Id, [.. plan.Unused], plan.UnusedNotBefore));
        }

        if (plan.Releases.Count > 0)
        {
            Send(Pool.Release([.. plan.Releases]));
        }

        if (plan.Kept.Count > 0)
        {
            _kept.AddRange(plan.Kept);
            if (_reportingKept.IsCompleted)
            {
                _reportingKept = ReportKeptAsync();
            }
        }

        if (plan.Unclaim.Count > 0)
        {
            Send(UnclaimAsync(plan.Unclaim));
        }

        if (_claiming.IsCompleted && _dispatcher?.NextClaim() is { } leases)
        {
            _claiming = ClaimAsync(leases);
        }
    }

    private void StartItem(SlotStart start)
    {
        var item = start.Item;
        // A claim the renewer no longer holds was lost while it waited for its slot (the store took it
        // back, or this silo was paused for a whole lease): its item grain gives it back without calling.
        var renewedAt = renewer.Drop(item.Lease.Token) ?? DateTimeOffset.MinValue;
        var assignment = new ItemAssignment(Id, item.Index, item.CustomId, item.Body, item.Attempts, item.RateLimitedAttempts, item.Lease,
            Spec.Options, _model, start.Slot, renewedAt, item.RetryState);

        _ = (_prepared.Remove(item.Index, out var grain) ? grain : Item(item.Index)).Start(assignment);
    }

    /// <summary>
    /// Claims what the dispatcher asks for, again and again while it asks: the claim runs beside this grain's
    /// other calls, never inside one of its turns, so reports keep flowing while the store answers, and every
    /// slot freed meanwhile goes into the next claim (one statement for all of them).
    /// </summary>
    private async Task ClaimAsync(IReadOnlyList<ItemLease> leases)
    {
        var dispatcher = _dispatcher!;
        for (IReadOnlyList<ItemLease>? next = leases; next is not null; next = dispatcher.NextClaim())
        {
            DispatchPlan plan;
            try
            {
                // Checkpoint 3: the claimed items are leased under this activation's claim tokens, renewed
                // while it lives. A crash from here to checkpoint 7 leaves them leased until their
                // claim expires, and lease expiry (Recovery/BatchRecovery) puts them back to pending.
                var claimed = await store.ClaimAsync(Id, next, time.GetUtcNow(), _deactivating.Token);
                CountClaimed(claimed);
                var nextDue = claimed.Count < next.Count ? await store.NextDueAsync(Id, _deactivating.Token) : null;
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

            Apply(plan);
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
            renewer.Drop(item.Lease.Token);
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

    /// <summary>Reports the ends of calls on kept slots to the pool, gathered over <see cref="KeptReportDelay"/>.</summary>
    private async Task ReportKeptAsync()
    {
        await Task.Delay(KeptReportDelay, time);
        while (_kept.Count > 0)
        {
            ImmutableArray<SlotRelease> kept = [.. _kept];
            _kept.Clear();
            try
            {
                await Pool.Kept(kept);
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
        if (hotSlot is not null)
        {
            FreeHotSlot(hotSlot);
        }

        if (!_inFlight.TryGetValue(report.Index, out var token) || token != report.LeaseToken)
        {
            LogStaleReport(logger, Id, report.Index, report.LeaseToken);
            return;
        }

        _inFlight.Remove(report.Index);
        _dispatcher?.Finished(report.Index);
        Count(report.Outcome, new TokenUsage(report.InputTokens, report.OutputTokens, report.CachedTokens));

        await FinishIfDoneAsync();
    }

    private void FreeHotSlot(SlotRelease release)
    {
        if (_dispatcher is null)
        {
            Send(Pool.Release([release]));
            return;
        }

        Apply(_dispatcher.Freed(release));
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
        await Pool.SetPaused(Id, true);
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
        if (_dispatcher is not null)
        {
            _dispatcher.Dispatching = true;
        }

        await Pool.SetPaused(Id, false);
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
        await Pool.Remove(Id);

        // A claim running now may still take items; they must be back to pending before the pending items
        // are cancelled, and the aborts go out to every item started.
        StopDispatching();
        await _claiming;
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
        if (_dispatcher is not null)
        {
            _dispatcher.Dispatching = false;
            Apply(_dispatcher.Drain());
        }
    }

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

        var requeued = await store.RequeueTerminalAsync(Id, filter, target == spec.Pool ? null : target, CancellationToken.None);
        if (requeued == 0)
        {
            return 0;
        }

        // Running again: a new epoch, so this run's claim tokens differ from the last run's.
        state.State.Spec = spec with { Pool = target };
        state.State.State = BatchState.Running;
        state.State.FinishedAt = null;
        state.State.Epoch++;
        state.State.Runs++;
        _pool = null;
        var counts = await store.CountAsync(Id, CancellationToken.None);
        (_pending, _succeeded, _failed, _cancelled) = (counts.Pending, counts.Succeeded, counts.Failed, counts.Cancelled);
        await SaveStateAsync();
        LogRetried(logger, Id, requeued, target);
        await JoinPoolAsync();
        return requeued;
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

    private async Task JoinPoolAsync()
    {
        var config = await Pool.GetConfig();
        _model = config?.Model ?? new ModelBinding();
        _dispatcher = new SlotDispatcher(Spec.Pool, state.State.Epoch, time)
        {
            Dispatching = state.State.State == BatchState.Running,
            LeaseDuration = (config ?? new PoolConfig()).LeaseDuration,
        };
        _maintenance ??= this.RegisterGrainTimer(MaintainAsync,
            new GrainTimerCreationOptions(MaintenancePeriod, MaintenancePeriod) { KeepAlive = true });
        if (state.State.FinishedAt is null)
        {
            _resume ??= await this.RegisterOrUpdateReminder(ResumeReminder, ResumePeriod, ResumePeriod);
        }

        await RegisterWithPoolAsync();
        await FinishIfDoneAsync();
    }

    /// <summary>Tells the pool what this batch still has outstanding, and whether it is paused.</summary>
    private async Task RegisterWithPoolAsync()
    {
        await Pool.Register(Id, _pending + _inFlight.Count, Spec.Options.Priority, Spec.Options.AttemptTimeout, Spec.Options.MaxRunning, Spec.Options.Owner,
            Spec.Options.Model);
        if (state.State.State == BatchState.Paused)
        {
            await Pool.SetPaused(Id, true);
        }
    }

    private async Task MaintainAsync(CancellationToken cancellationToken)
    {
        if (state.State.FinishedAt is not null)
        {
            return;
        }

        foreach (var item in await Recovery.RequeueExpiredAsync(_inFlight, cancellationToken))
        {
            _dispatcher?.Forget(item.Index);
            _prepared.Remove(item.Index);
            Count(item.Failed ? ItemOutcome.Failed : ItemOutcome.Retrying, default);
        }

        foreach (var (item, outcome) in await Recovery.ReconcileAsync(_inFlight, cancellationToken))
        {
            Count(outcome, new TokenUsage(item.InputTokens, item.OutputTokens, item.CachedTokens));
        }

        if (state.State.State is BatchState.Running or BatchState.Paused && _registering.IsCompleted)
        {
            // Not awaited: while the pool's silo is paused or cut off (until it is declared dead and the
            // pool moves), this batch goes on running its items on the slots it keeps.
            _registering = RegisterWithPoolAsync();
            Send(_registering);
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
                await Pool.Remove(Id);
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
