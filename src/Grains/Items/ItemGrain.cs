using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Nightshift.Batches;
using Nightshift.Diagnostics;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Results;
using Nightshift.Retry;
using Nightshift.Storage;

namespace Nightshift.Items;

/// <summary>
/// One model request. <see cref="Start"/> returns at once; the attempt runs on this activation, records
/// its result in the item store, then frees its slot and reports to its batch. No grain state: the item
/// store is the record.
/// </summary>
[SuppressMessage("Design", "CA1001", Justification = "A grain's life ends in OnDeactivateAsync, which disposes them.")]
internal sealed partial class ItemGrain(
    IItemStore store,
    IModelResolver models,
    LeaseRenewer renewer,
    TimeProvider time,
    ILogger<ItemGrain> logger) : Grain, IItemGrain
{
    /// <summary>The webhook event of an item that failed for good, for a batch that asked for them.</summary>
    private const string ItemFailedEvent = "item.failed";

    /// <summary>How long a deactivation (the silo stopping) waits for a running call before it stops it and gives the lease back.</summary>
    private static readonly TimeSpan StopGrace = TimeSpan.FromSeconds(10);

    /// <summary>Cancelled when the batch is cancelled: the call is aborted and the item ends cancelled.</summary>
    private readonly CancellationTokenSource _abort = new();

    /// <summary>Cancelled when the activation must go before its call ends: the item goes back to pending.</summary>
    private readonly CancellationTokenSource _interrupt = new();

    private Task _attempts = Task.CompletedTask;
    private IBatchGrain? _batch;
    private int _unfinished;

    public Task Start(ItemAssignment assignment)
    {
        // A retry can be granted while the previous attempt is still reporting its end (its result is
        // already written); the new attempt then runs right after it, never beside it.
        _unfinished++;
        _attempts = RunAfterAsync(_attempts, assignment);
        return Task.CompletedTask;
    }

    public Task Prepare() => Task.CompletedTask;

    public Task Abort()
    {
        _abort.Cancel();
        return Task.CompletedTask;
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        if (_unfinished > 0)
        {
            using var grace = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            grace.CancelAfter(StopGrace);
            try
            {
                await _attempts.WaitAsync(grace.Token);
            }
            catch (OperationCanceledException) when (grace.IsCancellationRequested)
            {
                await _interrupt.CancelAsync();
                await _attempts;
            }
        }

        // No attempt runs any more, and a deactivating activation receives no further call.
        _abort.Dispose();
        _interrupt.Dispose();
    }

    private async Task RunAfterAsync(Task previous, ItemAssignment assignment)
    {
        await previous;
        try
        {
            await RunAttemptAsync(assignment, _abort.Token);
        }
        finally
        {
            if (--_unfinished == 0)
            {
                DeactivateOnIdle();
            }
        }
    }

    private async Task RunAttemptAsync(ItemAssignment assignment, CancellationToken abort)
    {
        if (time.GetUtcNow() - assignment.RenewedAt > assignment.Lease.Duration)
        {
            // Its claim went a whole lease unrenewed before the call began and may have passed to another
            // silo: nothing is sent, and the item goes back to pending (the store fences a claim it no longer holds).
            await GiveBackAsync(assignment, estimate: 0, sent: false);
            return;
        }

        var lost = renewer.Hold(assignment.BatchId, assignment.Index, assignment.Lease, assignment.Slot, assignment.RenewedAt);
        using var execution = StartExecution(assignment);
        try
        {
            // The pool charged its budget a batch-wide mean for this call; this call's own estimate,
            // made before it starts, is what it keeps charged should it end without usage.
            var estimate = assignment.Slot.EstimateWithMaxTokens is { } defaultMaxTokens
                ? TokenEstimate.For(assignment.Body, assignment.Model.Model, defaultMaxTokens)
                : 0;

            // A pool of several models calls the one the line names.
            var binding = assignment.Model.For(assignment.Body);
            var started = time.GetUtcNow();
            var (result, stop) = await CallModelAsync(assignment, binding, abort, lost);
            var pausePool = stop == CallStop.None ? RetryPolicy.PoolPauseReason(result) : null;
            if (stop == CallStop.Interrupted)
            {
                execution?.SetTag(NightshiftTelemetry.Tags.Outcome, "interrupted");
                var history = History(assignment, binding, started, AttemptOutcomes.Interrupted, result, null, default, estimate);

                // The item and its slot go back first: a silo stopping (or found dead after a pause) may not get
                // further, and a slot the pool does not hear of stays counted until its call's deadline.
                await GiveBackAsync(assignment, estimate, sent: true);
                await store.LogAttemptAsync(assignment.BatchId, assignment.Index, assignment.Lease.Token, history, CancellationToken.None);
                return;
            }

            var record = Decide(assignment, result, stop == CallStop.Cancelled, out var outcome, out var rateLimitedFor);
            CountOutcome(assignment.Slot.Pool, outcome, rateLimitedFor is not null);
            record = record with { Log = History(assignment, binding, started, HistoryOutcome(outcome, result), result, record.Error, record.Usage, estimate) };
            if (record.State == ItemState.Failed && assignment.Options is { CallbackFailedItems: true, CallbackUrl: { } url })
            {
                record = record with { Webhook = new WebhookDelivery(assignment.BatchId, assignment.Run, ItemFailedEvent, url, 0, record.At, assignment.Index) };
            }

            // Checkpoint 6: the call has happened and may be billed. Its result must be recorded now (no
            // token could withdraw it); a crash before the write below costs this one call again, never more.
            var recorded = await store.RecordAttemptAsync(record, CancellationToken.None);

            // Checkpoint 7: the result is durable (or was fenced off because our lease was lost).
            // From here a crash costs nothing: the item is never called again for this attempt. Its
            // report may still be lost with this silo; the batch then reconciles it (Recovery/BatchRecovery).
            if (!recorded)
            {
                LogFenced(logger, assignment.BatchId, assignment.Index, assignment.Lease.Token);
                outcome = ItemOutcome.Fenced;
            }

            execution?.SetTag(NightshiftTelemetry.Tags.Outcome, OutcomeName(outcome));

            // The slot is freed only now, so the calls a crash can cost (sent, result not durable) never
            // outnumber the slots. A hot slot goes to the batch, which starts its next item on it at once.
            // (A lease that was lost is no longer held by the pool, which then ignores this release.)
            // An item escalated to its next pool is done with this one, as a finished item is (a fenced result escalated nothing).
            var stage = outcome == ItemOutcome.Retrying ? record.Stage : assignment.Stage;
            var leaves = outcome is ItemOutcome.Succeeded or ItemOutcome.Failed or ItemOutcome.Cancelled || stage != assignment.Stage;
            var release = new SlotRelease(assignment.BatchId, assignment.Slot.Token, leaves, rateLimitedFor,
                record.Usage.InputTokens + record.Usage.OutputTokens, pausePool, estimate, result.Status == ModelCallStatus.Succeeded, result.Limits);
            await EndAsync(assignment, release, toPool: false, outcome, record.Usage, stage);
        }
        catch (Exception failure)
        {
            // The lease stays unreleased: it expires, and the pool and the batch recover the slot and
            // the item from there.
            LogAttemptCrashed(logger, failure, assignment.BatchId, assignment.Index);
            execution?.SetStatus(ActivityStatusCode.Error, failure.GetType().Name);
        }
        finally
        {
            renewer.Drop(assignment.BatchId, assignment.Lease.Token);
        }
    }

    /// <summary>
    /// The call was stopped before it ended, or never began: the item goes back to pending, interrupted. A
    /// slot whose call was <paramref name="sent"/> goes back to the pool, which grants it again only after its
    /// round trip (the provider may still be at work on the call cut off); one never used goes on as any freed
    /// slot (a hot one to its batch).
    /// </summary>
    private async Task GiveBackAsync(ItemAssignment assignment, long estimate, bool sent)
    {
        // Checkpoint 5: the request may have reached the model, but no answer reached us. Nothing is
        // recorded but the interruption, so the item will be called again; an interruption does not
        // count as a failed attempt. Never withdrawn: a stopping silo gives its items back before it goes.
        await store.ReleaseLeaseAsync(assignment.BatchId, assignment.Index, assignment.Lease.Token, interrupted: true, CancellationToken.None);
        LogInterrupted(logger, assignment.BatchId, assignment.Index);
        var release = new SlotRelease(assignment.BatchId, assignment.Slot.Token, ItemTerminal: false, RateLimitedFor: null, EstimatedTokens: estimate);
        await EndAsync(assignment, release, toPool: sent, ItemOutcome.Retrying, default, assignment.Stage);
    }

    /// <summary>
    /// Frees the slot and reports the attempt: a hot slot goes back to the batch with the report, in one
    /// message (the batch starts its next item on it); any other slot, or one <paramref name="toPool"/>, to the pool.
    /// </summary>
    private Task EndAsync(ItemAssignment assignment, SlotRelease release, bool toPool, ItemOutcome outcome, TokenUsage usage, int stage)
    {
        var batch = _batch ??= GrainFactory.GetGrain<IBatchGrain>(assignment.BatchId);
        var report = new ItemReport(assignment.Index, assignment.Lease.Token, outcome, usage.InputTokens, usage.OutputTokens, usage.CachedTokens,
            assignment.Slot.Pool, stage);
        return assignment.Slot.Hot && !toPool
            ? batch.ItemFinished(report, release)
            : Task.WhenAll(GrainFactory.GetGrain<IPoolGrain>(assignment.Slot.Pool).Release([release]), batch.ItemFinished(report, hotSlot: null));
    }

    /// <summary>
    /// The attempt as its item's history keeps it. A call sent and then cut off, timed out or lost on the way back
    /// may have been billed with no answer kept: it carries its token estimate (the pool's, or one made now).
    /// </summary>
    private AttemptLog History(ItemAssignment assignment, ModelBinding binding, DateTimeOffset started, string outcome, ModelCallResult result, string? error,
        TokenUsage usage, long estimate)
    {
        var maybeBilled = outcome == AttemptOutcomes.Interrupted || result.Status is ModelCallStatus.Timeout or ModelCallStatus.NetworkError;
        var estimated = !maybeBilled ? 0
            : estimate > 0 ? estimate
            : TokenEstimate.For(assignment.Body, binding.Model, assignment.Slot.EstimateWithMaxTokens ?? new PoolConfig().DefaultMaxTokens);
        return new AttemptLog(started, time.GetUtcNow() - started, assignment.Slot.Pool, binding.Model, outcome,
            result.StatusCode == 0 ? null : result.StatusCode, error ?? result.Error, usage, maybeBilled, estimated);
    }

    /// <summary>What the history calls an attempt that ended as <paramref name="outcome"/> (a 2xx that did not succeed failed validation).</summary>
    private static string HistoryOutcome(ItemOutcome outcome, ModelCallResult result) => outcome switch
    {
        ItemOutcome.Succeeded => AttemptOutcomes.Succeeded,
        ItemOutcome.Cancelled => AttemptOutcomes.Cancelled,
        _ when result.Status == ModelCallStatus.Succeeded => AttemptOutcomes.ValidationFailed,
        ItemOutcome.Failed => AttemptOutcomes.Failed,
        _ when result.RateLimited => AttemptOutcomes.RateLimited,
        _ => AttemptOutcomes.Retried,
    };

    private async Task<(ModelCallResult Result, CallStop Stop)> CallModelAsync(ItemAssignment assignment, ModelBinding binding, CancellationToken abort, CancellationToken lost)
    {
        IChatModel model;
        try
        {
            model = models.Resolve(binding);
        }
        catch (Exception unusable) when (unusable is InvalidOperationException or NotSupportedException or UriFormatException)
        {
            // Retrying cannot help, and without this the item would crash-loop until it failed as poison.
            return (ModelCallResult.Unusable($"the pool's model cannot be called: {unusable.Message}"), CallStop.None);
        }

        var request = new ModelRequest(assignment.CustomId, Body(assignment), binding.Model, assignment.Attempts + assignment.RateLimitedAttempts + 1);
        using var call = ModelCallTelemetry.Start(assignment.Slot.Pool, binding, time);
        var (result, stop) = await InvokeAsync(model, request, assignment.Options.AttemptTimeout, abort, lost);
        call.End(result, stop switch { CallStop.Cancelled => "cancelled", CallStop.Interrupted => "interrupted", _ => null });
        return (result, stop);
    }

    private async Task<(ModelCallResult Result, CallStop Stop)> InvokeAsync(IChatModel model, ModelRequest request, TimeSpan attemptTimeout,
        CancellationToken abort, CancellationToken lost)
    {
        using var timeout = new CancellationTokenSource(attemptTimeout, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource([abort, _interrupt.Token, renewer.Abandoned, lost, timeout.Token]);

        // Checkpoint 4: nothing has been sent. A crash before the call leaves the item leased and
        // unbilled; its lease expires and recovery puts it back to pending.
        try
        {
            return (await model.CompleteAsync(request, linked.Token), CallStop.None);
        }
        catch (OperationCanceledException) when (abort.IsCancellationRequested)
        {
            return (ModelCallResult.Network("cancelled"), CallStop.Cancelled);
        }
        catch (OperationCanceledException) when (_interrupt.IsCancellationRequested || renewer.Abandoned.IsCancellationRequested || lost.IsCancellationRequested)
        {
            return (ModelCallResult.Network("interrupted"), CallStop.Interrupted);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested)
        {
            return (ModelCallResult.TimedOut(attemptTimeout), CallStop.None);
        }
        catch (HttpRequestException network)
        {
            return (ModelCallResult.Network(network.Message), CallStop.None);
        }
        catch (IOException network)
        {
            return (ModelCallResult.Network(network.Message), CallStop.None);
        }
    }

    private AttemptRecord Decide(ItemAssignment assignment, ModelCallResult result, bool cancelled, out ItemOutcome outcome, out TimeSpan? rateLimitedFor)
    {
        var now = time.GetUtcNow();
        var attempts = assignment.Attempts;
        var rateLimited = assignment.RateLimitedAttempts;
        var validationFailures = ValidationFailures(assignment.RetryState);
        rateLimitedFor = result.RateLimited ? result.RetryAfter ?? TimeSpan.Zero : null;
        if (cancelled)
        {
            outcome = ItemOutcome.Cancelled;
            return Record(ItemState.Cancelled, null, null, "cancelled");
        }

        var policy = new RetryPolicy(assignment.Options, time, Random.Shared.NextDouble);
        switch (policy.Decide(attempts, rateLimited, result))
        {
            case RetryDecision.Succeed when InvalidAnswer(assignment, result.Body) is { } invalid:
                // Billed and answered, but not what was asked for: retried under its own budget, at once.
                validationFailures++;
                LogInvalidAnswer(logger, assignment.BatchId, assignment.Index, validationFailures, invalid);
                if (validationFailures >= assignment.Options.MaxValidationAttempts)
                {
                    outcome = ItemOutcome.Failed;
                    return Record(ItemState.Failed, null, RetryState(result, null, invalid), $"{BatchOutputWriter.ValidationFailed}: {invalid}");
                }

                // After a validation failure (and only then), a batch that escalates asks its next pool.
                outcome = ItemOutcome.Retrying;
                return Record(ItemState.Pending, now, RetryState(result, null, invalid), $"answer failed validation: {invalid}",
                    assignment.Options.StageAfter(validationFailures));
            case RetryDecision.Succeed:
                outcome = ItemOutcome.Succeeded;
                return Record(ItemState.Succeeded, null, null, null);
            case RetryDecision.RetryAt retry:
                outcome = ItemOutcome.Retrying;
                if (retry.RateLimited)
                {
                    rateLimited++;
                }
                else
                {
                    attempts++;
                }

                return Record(ItemState.Pending, retry.NotBefore, RetryState(result, retry.Delay, null), result.Error);
            case RetryDecision.Fail fail:
                outcome = ItemOutcome.Failed;
                if (result.RateLimited)
                {
                    rateLimited++;
                }
                else
                {
                    attempts++;
                }

                return Record(ItemState.Failed, null, RetryState(result, null, null), fail.Reason);
            default:
                throw new InvalidOperationException("Unknown retry decision.");
        }

        AttemptRecord Record(ItemState itemState, DateTimeOffset? next, string? retryState, string? error, int? stage = null) => new(
            assignment.BatchId, assignment.Index, assignment.Lease.Token, itemState,
            itemState == ItemState.Succeeded ? attempts + 1 : attempts, rateLimited, next, retryState,
            result.StatusCode == 0 ? null : result.StatusCode, result.Body, error, result.Usage, now, Stage: stage ?? assignment.Stage);

        // Read back by the item's next claim: the validation failures carry over from attempt to attempt.
        string RetryState(ModelCallResult last, TimeSpan? delay, string? invalid) => JsonSerializer.Serialize(new
        {
            last_status = last.StatusCode == 0 ? (int?)null : last.StatusCode,
            last_error = last.Error,
            retry_after_ms = last.RetryAfter?.TotalMilliseconds,
            delay_ms = delay?.TotalMilliseconds,
            at = now,
            validation_failures = validationFailures,
            validation_error = invalid,
        });
    }

    /// <summary>Why the answer fails the JSON its request or batch asked for, or <c>null</c> when it passes or nothing was asked.</summary>
    private static string? InvalidAnswer(ItemAssignment assignment, string? answer) =>
        answer is not null && AnswerValidator.For(assignment.Body, assignment.Options.Schema) is { } validator ? validator.Problem(answer) : null;

    /// <summary>The request body, with the batch's temperature for this attempt (by the validation failures before it) when it sets them.</summary>
    private static string Body(ItemAssignment assignment)
    {
        if (assignment.Options.Temperatures is not { Length: > 0 } temperatures || JsonNode.Parse(assignment.Body) is not JsonObject body)
        {
            return assignment.Body;
        }

        body["temperature"] = temperatures[Math.Min(ValidationFailures(assignment.RetryState), temperatures.Length - 1)];
        return body.ToJsonString();
    }

    /// <summary>The validation failures an item's retry state counts (0 before any).</summary>
    private static int ValidationFailures(string? retryState)
    {
        if (retryState is null)
        {
            return 0;
        }

        using var state = JsonDocument.Parse(retryState);
        return state.RootElement.TryGetProperty("validation_failures", out var failures) && failures.ValueKind == JsonValueKind.Number ? failures.GetInt32() : 0;
    }

    /// <summary>
    /// The attempt's span: a root of its own (the grant that started it belongs to another item's
    /// chain, which would otherwise make one endless trace of a whole batch). When the batch waited for
    /// the slot, the span starts when the wait began and holds a slot-wait child.
    /// </summary>
    private static Activity? StartExecution(ItemAssignment assignment)
    {
        var lease = assignment.Slot;
        var waited = lease.WaitingSince is { } since && lease.GrantedAt > since ? lease.GrantedAt - since : TimeSpan.Zero;
        PoolInstruments.SlotWait.Record(waited.TotalSeconds, PoolInstruments.PoolTag(lease.Pool));
        if (!NightshiftTelemetry.Source.HasListeners())
        {
            return null;
        }

        Activity.Current = null;
        var execution = NightshiftTelemetry.Source.StartActivity(NightshiftTelemetry.Spans.ExecuteItem, ActivityKind.Internal, parentContext: default,
            startTime: waited > TimeSpan.Zero ? lease.WaitingSince!.Value : default);
        if (execution is null)
        {
            return null;
        }

        execution.SetTag(NightshiftTelemetry.Tags.Pool, lease.Pool);
        execution.SetTag(NightshiftTelemetry.Tags.BatchId, assignment.BatchId);
        execution.SetTag(NightshiftTelemetry.Tags.ItemIndex, assignment.Index);
        execution.SetTag(NightshiftTelemetry.Tags.Attempt, assignment.Attempts + assignment.RateLimitedAttempts + 1);
        if (waited > TimeSpan.Zero)
        {
            using var wait = NightshiftTelemetry.Source.StartActivity(NightshiftTelemetry.Spans.SlotWait, ActivityKind.Internal, execution.Context,
                [PoolInstruments.PoolTag(lease.Pool)], startTime: lease.WaitingSince!.Value);
            wait?.SetEndTime(lease.GrantedAt.UtcDateTime);
        }

        return execution;
    }

    private static void CountOutcome(string pool, ItemOutcome outcome, bool rateLimited)
    {
        var tag = PoolInstruments.PoolTag(pool);
        if (rateLimited)
        {
            PoolInstruments.RateLimited.Add(1, tag);
        }

        switch (outcome)
        {
            case ItemOutcome.Succeeded:
                ItemInstruments.Completed.Add(1, tag);
                break;
            case ItemOutcome.Failed:
                ItemInstruments.Failed.Add(1, tag);
                break;
            case ItemOutcome.Retrying:
                ItemInstruments.Retries.Add(1, tag, new KeyValuePair<string, object?>(NightshiftTelemetry.Tags.RetryReason, rateLimited ? "rate_limited" : "error"));
                break;
        }
    }

    private static string OutcomeName(ItemOutcome outcome) => outcome.ToString().ToLower(CultureInfo.InvariantCulture);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Information, Message = "Item {BatchId}/{Index} was interrupted by its activation stopping; it goes back to pending")]
    private static partial void LogInterrupted(ILogger logger, string batchId, int index);

    [LoggerMessage(EventId = 3005, Level = LogLevel.Warning, Message = "Item {BatchId}/{Index}'s answer failed validation ({Failures} so far): {Reason}")]
    private static partial void LogInvalidAnswer(ILogger logger, string batchId, int index, int failures, string reason);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Warning, Message = "Item {BatchId}/{Index} discarded its result: lease {Token} is no longer its lease")]
    private static partial void LogFenced(ILogger logger, string batchId, int index, long token);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Error, Message = "Item {BatchId}/{Index} could not finish its attempt; its lease will expire and the item will be retried")]
    private static partial void LogAttemptCrashed(ILogger logger, Exception exception, string batchId, int index);
}

/// <summary>Why a model call ended without an answer of its own.</summary>
internal enum CallStop
{
    None = 0,

    /// <summary>The batch was cancelled.</summary>
    Cancelled,

    /// <summary>The item's activation had to stop (its silo is stopping).</summary>
    Interrupted,
}
