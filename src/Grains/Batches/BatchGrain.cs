using System.Collections.Immutable;
using Microsoft.Extensions.Logging;
using Nightshift.Hosting;
using Nightshift.Items;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Storage;

namespace Nightshift.Batches;

[GenerateSerializer, Alias("nightshift.BatchGrainState")]
public sealed class BatchGrainState
{
    [Id(0)] public BatchSpec? Spec { get; set; }

    [Id(1)] public BatchState State { get; set; }

    [Id(2)] public DateTimeOffset CreatedAt { get; set; }

    [Id(3)] public DateTimeOffset? FinishedAt { get; set; }
}

/// <summary>
/// One batch. Persists only its spec and state; its counters are rebuilt from the item store on
/// activation and kept in memory after that, so finishing an item costs no grain-state write.
/// </summary>
internal sealed partial class BatchGrain(
    [PersistentState(StorageNames.BatchState, StorageNames.Grains)] IPersistentState<BatchGrainState> state,
    IItemStore store,
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

    /// <summary>How long a batch with nothing due waits before it asks for slots again.</summary>
    private static readonly TimeSpan RecheckDelay = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// Claims that may be out at once. A slot granted while one claim runs goes out in a second at once
    /// instead of waiting for the first to come back (a few milliseconds of every slot's cycle); slots
    /// granted while both run wait and go out together, so claims stay in bulk under load.
    /// </summary>
    private const int ClaimsInFlight = 2;

    private readonly Dictionary<int, long> _inFlight = [];

    /// <summary>Slots granted and not yet matched with items: <see cref="DispatchAsync()"/> claims them in bulk.</summary>
    private readonly List<ItemLease> _granted = [];

    /// <summary>The dispatch loops started (at most <see cref="ClaimsInFlight"/> of them still running).</summary>
    private readonly List<Task> _dispatchers = [];
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

    private IPoolGrain Pool => GrainFactory.GetGrain<IPoolGrain>(Spec.Pool);

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (!state.RecordExists || state.State.Spec is null)
        {
            return;
        }

        await store.RequeueExpiredLeasesAsync(Id, time.GetUtcNow(), cancellationToken);
        var (counts, running) = await store.ReadProgressAsync(Id, cancellationToken);

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
            await JoinPoolAsync();
        }
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
            Pending = _pending,
            Running = _inFlight.Count,
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

    /// <summary>
    /// Takes the slots and returns: the claim runs beside this grain's other calls, never inside one of
    /// its turns, so reports keep flowing while the store answers, and every slot granted meanwhile
    /// goes into the next claim (one statement for all of them).
    /// </summary>
    public Task SlotsGranted(ImmutableArray<ItemLease> leases)
    {
        _granted.AddRange(leases);
        _dispatchers.RemoveAll(dispatcher => dispatcher.IsCompleted);
        if (_dispatchers.Count < ClaimsInFlight)
        {
            _dispatchers.Add(DispatchAsync());
        }

        return Task.CompletedTask;
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        // Slots granted to this activation reach their items (or go back) before it goes; if the silo
        // cannot wait, their leases expire and the pool takes them back.
        try
        {
            await Task.WhenAll(_dispatchers).WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException)
        {
            LogDispatchAbandoned(logger, Id, _granted.Count);
        }
    }

    private async Task DispatchAsync()
    {
        // The next claim goes out as soon as the store has answered this one; the items it took start
        // meanwhile. The loop ends once every start has landed (the next grant then starts a new one).
        // Its turns interleave with the grain's others and with a second loop's, never run beside them.
        var handOuts = new List<Task>();
        while (_granted.Count > 0)
        {
            ImmutableArray<ItemLease> leases = [.. _granted];
            _granted.Clear();
            try
            {
                if (state.State.State == BatchState.Running)
                {
                    handOuts.Add(HandOutAsync(leases, await ClaimAsync(leases)));
                }
                else
                {
                    await Pool.ReturnUnused(Id, [.. leases.Select(l => l.Token)], null);
                }
            }
            catch (Exception failure)
            {
                // The items stay pending and the leases expire: the pool and this batch recover both.
                LogDispatchFailed(logger, failure, Id, leases.Length);
            }

            if (_granted.Count == 0)
            {
                await Task.WhenAll(handOuts);
                handOuts.Clear();
            }
        }
    }

    /// <summary>Claims an item for each lease and counts the claimed items in flight.</summary>
    private async Task<IReadOnlyList<ClaimedItem>> ClaimAsync(ImmutableArray<ItemLease> leases)
    {
        var claimed = await store.ClaimAsync(Id, leases, time.GetUtcNow(), CancellationToken.None);
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
        }

        return claimed;
    }

    /// <summary>Starts the claimed items and gives back the slots no item was due for.</summary>
    private async Task HandOutAsync(ImmutableArray<ItemLease> leases, IReadOnlyList<ClaimedItem> claimed)
    {
        try
        {
            await Task.WhenAll(claimed.Select(item => GrainFactory.GetGrain<IItemGrain>(ItemKey.Format(Id, item.Index)).Start(
                new ItemAssignment(Id, item.Index, item.CustomId, item.Body, item.Attempts, item.RateLimitedAttempts, item.Lease, Spec.Options, _model))));
            if (claimed.Count < leases.Length)
            {
                // Fewer items were due than slots granted: the rest wait for their backoff, or are still
                // finishing an attempt whose slot was already freed. Give the slots back and ask again
                // when the next item is due.
                var now = time.GetUtcNow();
                var nextDue = await store.NextDueAsync(Id, CancellationToken.None) ?? now + RecheckDelay;
                await Pool.ReturnUnused(Id, [.. leases.Skip(claimed.Count).Select(l => l.Token)], nextDue > now ? nextDue : null);
            }
        }
        catch (Exception failure)
        {
            // An item that did not start keeps its lease until it expires; the batch then requeues it.
            LogDispatchFailed(logger, failure, Id, leases.Length);
        }
    }

    public async Task ItemFinished(ItemReport report)
    {
        if (!_inFlight.TryGetValue(report.Index, out var token) || token != report.LeaseToken)
        {
            LogStaleReport(logger, Id, report.Index, report.LeaseToken);
            return;
        }

        _inFlight.Remove(report.Index);
        Count(report.Outcome, new TokenUsage(report.InputTokens, report.OutputTokens, report.CachedTokens));

        await FinishIfDoneAsync();
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

        // A claim running now may still take items; they must be in flight before the aborts go out.
        await Task.WhenAll(_dispatchers);
        var cancelled = await store.CancelPendingAsync(Id, CancellationToken.None);
        _pending -= cancelled;
        _cancelled += cancelled;
        await Task.WhenAll(_inFlight.Keys.Select(index => GrainFactory.GetGrain<IItemGrain>(ItemKey.Format(Id, index)).Abort()));
        await FinishIfDoneAsync();
    }

    /// <summary>Writes the batch's state to its grain state and to the store's catalogue (which lists batches by state).</summary>
    private async Task SaveStateAsync()
    {
        await state.WriteStateAsync();
        await store.SetBatchStateAsync(Id, state.State.State, state.State.FinishedAt, CancellationToken.None);
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
        _model = await Pool.GetConfig() is { } config ? config.Model : new ModelBinding();
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
        await Pool.Register(Id, _pending + _inFlight.Count, Spec.Options.Priority);
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

        foreach (var item in await store.RequeueExpiredLeasesAsync(Id, time.GetUtcNow(), cancellationToken))
        {
            // Its holder stopped renewing: it died with its silo. A late report from it is stale.
            if (_inFlight.Remove(item.Index))
            {
                LogLeaseDied(logger, Id, item.Index, item.Failed);
                Count(item.Failed ? ItemOutcome.Failed : ItemOutcome.Retrying, default);
            }
        }

        await ReconcileAsync(cancellationToken);
        if (state.State.State is BatchState.Running or BatchState.Paused)
        {
            await RegisterWithPoolAsync();
        }

        await FinishIfDoneAsync();
    }

    /// <summary>
    /// Counts the items the store shows past the attempt this batch is waiting on, in case the item's
    /// report was lost (its call failed when a silo died). A report that still arrives is then stale.
    /// </summary>
    private async Task ReconcileAsync(CancellationToken cancellationToken)
    {
        if (_inFlight.Count == 0)
        {
            return;
        }

        foreach (var item in await store.GetItemsAsync(Id, [.. _inFlight.Keys], cancellationToken))
        {
            if (item.State == ItemState.Leased && item.LeaseToken == _inFlight.GetValueOrDefault(item.Index))
            {
                continue;
            }

            if (_inFlight.Remove(item.Index))
            {
                LogReconciled(logger, Id, item.Index, item.State);
                Count(item.State switch
                {
                    ItemState.Succeeded => ItemOutcome.Succeeded,
                    ItemState.Failed => ItemOutcome.Failed,
                    ItemState.Cancelled => ItemOutcome.Cancelled,
                    _ => ItemOutcome.Retrying,
                }, new TokenUsage(item.InputTokens, item.OutputTokens, item.CachedTokens));
            }
        }
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

    [LoggerMessage(EventId = 2005, Level = LogLevel.Warning, Message = "Batch {BatchId} item {Index} lost its lease holder; failed as a poison item: {Failed}")]
    private static partial void LogLeaseDied(ILogger logger, string batchId, int index, bool failed);

    [LoggerMessage(EventId = 2006, Level = LogLevel.Warning, Message = "Batch {BatchId} item {Index} never reported its attempt; the store shows it {State}")]
    private static partial void LogReconciled(ILogger logger, string batchId, int index, ItemState state);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Debug, Message = "Batch {BatchId} woken by its resume reminder while {State}")]
    private static partial void LogReminder(ILogger logger, string batchId, BatchState state);

    [LoggerMessage(EventId = 2007, Level = LogLevel.Warning, Message = "Batch {BatchId} could not hand {Count} granted slots to items; their leases will expire")]
    private static partial void LogDispatchFailed(ILogger logger, Exception failure, string batchId, int count);

    [LoggerMessage(EventId = 2008, Level = LogLevel.Warning, Message = "Batch {BatchId} deactivated with {Count} granted slots not handed out; their leases will expire")]
    private static partial void LogDispatchAbandoned(ILogger logger, string batchId, int count);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Warning, Message = "Batch {BatchId} ignored a report for item {Index} under lease {Token}: not the item's current lease")]
    private static partial void LogStaleReport(ILogger logger, string batchId, int index, long token);
}
