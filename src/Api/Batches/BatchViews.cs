using System.Globalization;
using System.Text.Json;
using Nightshift.Batches;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Storage;

namespace Nightshift.Api.Batches;

/// <summary>Items per state.</summary>
public sealed record ItemCountsView(long Pending, long Running, long Succeeded, long Failed, long Cancelled);

/// <summary>
/// A batch: state, counts per item state, tokens (<see cref="CachedTokens"/> is the part of the input
/// served from the provider's prompt cache), cost from the price table (<c>null</c> when the pool's
/// model has no price), times, throughput and ETA.
/// </summary>
public sealed record BatchView(
    string Id,
    string State,
    string? Pool,
    long Total,
    ItemCountsView Counts,
    long InputTokens,
    long OutputTokens,
    long CachedTokens,
    decimal? Cost,
    DateTimeOffset? CreatedAt,
    DateTimeOffset? StartedAt,
    DateTimeOffset? FinishedAt,
    double ItemsPerSecond,
    DateTimeOffset? Eta,
    string? Silo)
{
    /// <summary>The calls that may have been billed with no answer kept (filled in by <c>GET /v1/batches/{id}</c> and webhooks).</summary>
    public MaybeBilledView? MaybeBilled { get; init; }

    /// <summary>The view of <paramref name="status"/>, priced at its pool's model.</summary>
    public static async Task<BatchView> FromAsync(BatchStatus status, IGrainFactory grains, PriceTable prices, DateTimeOffset now) =>
        From(status, now, PricedAt(await PoolModelAsync(status, grains), prices, new TokenUsage(status.InputTokens, status.OutputTokens, status.CachedTokens)));

    /// <summary>The whole view, as <c>GET /v1/batches/{id}</c> answers it and a webhook sends it: with the calls that may have been billed.</summary>
    public static async Task<BatchView> WithMaybeBilledAsync(BatchStatus status, IGrainFactory grains, IItemCatalogue store, PriceTable prices, DateTimeOffset now,
        CancellationToken cancellationToken)
    {
        var model = await PoolModelAsync(status, grains);
        var maybe = await store.GetMaybeBilledAsync(status.BatchId, cancellationToken);
        return From(status, now, PricedAt(model, prices, new TokenUsage(status.InputTokens, status.OutputTokens, status.CachedTokens))) with
        {
            MaybeBilled = new MaybeBilledView(maybe.Calls, maybe.EstimatedTokens, PricedAt(model, prices, new TokenUsage(maybe.EstimatedTokens, 0))),
        };
    }

    /// <summary>The model the batch's pool calls, which its costs are priced at; <c>null</c> when the pool is gone.</summary>
    private static async Task<string?> PoolModelAsync(BatchStatus status, IGrainFactory grains) =>
        status.Pool is { } pool && await grains.GetGrain<IPoolGrain>(pool).GetConfig() is { } config ? config.Model.Model : null;

    private static decimal? PricedAt(string? model, PriceTable prices, TokenUsage usage) => model is null ? null : prices.Cost(model, usage);

    public static BatchView From(BatchStatus status, DateTimeOffset now, decimal? cost)
    {
        var done = status.Done;
        var end = status.FinishedAt ?? now;
        var seconds = status.CreatedAt is { } created ? (end - created).TotalSeconds : 0;
        var rate = seconds > 0 ? done / seconds : 0;
        var remaining = status.Total - done;
        DateTimeOffset? eta = status.FinishedAt ?? (rate > 0 && remaining > 0 && status.State == BatchState.Running ? now.AddSeconds(remaining / rate) : null);
        return new BatchView(status.BatchId, StateName(status.State), status.Pool, status.Total,
            new ItemCountsView(status.Pending, status.Running, status.Succeeded, status.Failed, status.Cancelled),
            status.InputTokens, status.OutputTokens, status.CachedTokens, cost, status.CreatedAt, status.CreatedAt, status.FinishedAt, Math.Round(rate, 3), eta, status.Silo);
    }

    public static string StateName(BatchState state) => state.ToString().ToLower(CultureInfo.InvariantCulture);
}

/// <summary>A batch as listings show it (from the catalogue, without asking every grain), with who submitted it (<c>null</c> without principals).</summary>
public sealed record BatchSummary(string Id, string Pool, string State, int Total, DateTimeOffset CreatedAt, DateTimeOffset? FinishedAt, BatchOwner? Owner)
{
    public static BatchSummary From(BatchRecord record) =>
        new(record.BatchId, record.Pool, BatchView.StateName(record.State), record.ItemCount, record.CreatedAt, record.FinishedAt, record.Owner);
}

/// <summary>A page of batches; <see cref="NextOffset"/> is <c>null</c> on the last page.</summary>
public sealed record BatchPage(IReadOnlyList<BatchSummary> Items, int Offset, int Limit, int? NextOffset);

/// <summary>One bad input line (or JSON item), as a 400 lists it.</summary>
public sealed record LineProblem(long Line, string? Field, string Message);

/// <summary>The answer to <c>POST /v1/batches/{id}/retry</c>: how many items went back to pending, and the batch now.</summary>
public sealed record RetryView(int Requeued, BatchView Batch);

/// <summary>
/// One webhook delivery of a batch: the run whose end it announces (or the failed item's index and run), its event, where it
/// stands (<c>pending</c>, <c>delivered</c>, <c>givenUp</c>) and its last error.
/// </summary>
public sealed record WebhookView(int Run, int? Item, string Event, string State, int Attempts, DateTimeOffset CreatedAt, DateTimeOffset? DeliveredAt, string? LastError)
{
    public static WebhookView From(WebhookStatus status) => new(status.Run, status.Item == WebhookDelivery.BatchEnd ? null : status.Item, status.Event,
        JsonNamingPolicy.CamelCase.ConvertName(status.State.ToString()), status.Attempts, status.CreatedAt, status.DeliveredAt, status.LastError);
}

/// <summary>
/// Calls sent and then cut off, timed out or lost on the way back (a crash, a lost lease, the batch cancelled): the
/// provider may have billed them though no answer was kept. Their tokens are estimates; the cost prices them as input.
/// </summary>
public sealed record MaybeBilledView(long Calls, long EstimatedTokens, decimal? EstimatedCost);

/// <summary>
/// An item and its attempts (<c>GET /v1/batches/{id}/items/{customId}</c>): the pool and model whose answer is its
/// result (the last answer, escalated or not; <c>null</c> before any), and its calls that may have been billed with no answer kept.
/// </summary>
public sealed record ItemView(
    string CustomId, int Index, string State, int? StatusCode, string? Error, long InputTokens, long OutputTokens, long CachedTokens,
    int Interruptions, string? Pool, string? Model, MaybeBilledView MaybeBilled, IReadOnlyList<AttemptView> Attempts)
{
    public static ItemView From(ItemHistory item, PriceTable prices)
    {
        var answered = item.History.LastOrDefault(attempt => attempt.Outcome is AttemptOutcomes.Succeeded or AttemptOutcomes.ValidationFailed);
        var maybe = item.History.Where(attempt => attempt.MaybeBilled).ToList();
        var costs = maybe.Select(attempt => prices.Cost(attempt.Model, new TokenUsage(attempt.EstimatedTokens, 0))).ToList();
        return new(item.CustomId, item.Index, item.State == ItemState.Leased ? "running" : item.State.ToString().ToLower(CultureInfo.InvariantCulture),
            item.StatusCode, item.Error, item.Usage.InputTokens, item.Usage.OutputTokens, item.Usage.CachedTokens, item.Interruptions, answered?.Pool, answered?.Model,
            new MaybeBilledView(maybe.Count, maybe.Sum(attempt => attempt.EstimatedTokens), costs.Any(cost => cost is null) ? null : costs.Sum(cost => cost!.Value)),
            [.. item.History.Select(attempt => new AttemptView(attempt.StartedAt, Math.Round(attempt.Duration.TotalSeconds, 3), attempt.Pool, attempt.Model, attempt.Outcome,
                attempt.StatusCode, attempt.Error, attempt.Usage.InputTokens, attempt.Usage.OutputTokens, attempt.Usage.CachedTokens, attempt.MaybeBilled, attempt.EstimatedTokens))]);
    }
}

/// <summary>One call of an item: when it started, how long it took, where it ran, how it ended, and its tokens.</summary>
public sealed record AttemptView(
    DateTimeOffset StartedAt, double DurationSeconds, string Pool, string Model, string Outcome, int? StatusCode, string? Error,
    long InputTokens, long OutputTokens, long CachedTokens, bool MaybeBilled, long EstimatedTokens);
