using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;
using Nightshift.Api.Security;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Storage;

namespace Nightshift.Api.Pools;

/// <summary>A pool as <c>PUT /v1/pools/{name}</c> takes it; every field is optional and keeps its default.</summary>
public sealed record PoolRequest
{
    public string? Provider { get; init; }

    public string? Endpoint { get; init; }

    public string? Model { get; init; }

    /// <summary>The name of the environment variable holding the key; never the key itself.</summary>
    public string? ApiKeyEnv { get; init; }

    public int? MaxRunning { get; init; }

    public long? MaxQueued { get; init; }

    public int? Rpm { get; init; }

    public long? Tpm { get; init; }

    public double? CooldownSeconds { get; init; }

    public double? SlowStartSeconds { get; init; }

    public double? LeaseSeconds { get; init; }

    public double? BurstSeconds { get; init; }

    public double? CapDecrease { get; init; }

    public double? CapIncreasePerSuccess { get; init; }

    public double? DecreaseWindowSeconds { get; init; }

    public int? ExhaustedAfterWindows { get; init; }

    public double? ExhaustedWaitSeconds { get; init; }

    public double? LearnedLimitShare { get; init; }

    public int? DefaultMaxTokens { get; init; }

    /// <summary>Models (or deployments) sharing the pool's cap and budgets; a line's <c>body.model</c> picks one.</summary>
    public string[]? Models { get; init; }

    /// <summary>Fields the request has that a pool does not: refused by name, never ignored (a typo would be).</summary>
    [JsonExtensionData]
    public Dictionary<string, JsonElement>? UnknownFields { get; init; }
}

/// <summary>A budget in force: its rate, where it came from (<c>configured</c> or <c>learned</c>), and its bucket now.</summary>
public sealed record BudgetView(long PerMinute, string Source, long? ProviderLimit, long? ProviderRemaining, double Available, double Burst);

/// <summary>
/// The pool's rate control now: the adaptive cap (before holds and slow start), until when grants are
/// held after the provider said its quota is spent, the slow start's end, the request and token budgets
/// (<c>null</c> when none is in force) and the token estimate each new grant is charged.
/// </summary>
public sealed record RateControlView(double AdaptiveCap, DateTimeOffset? HeldUntil, double HeldSeconds, DateTimeOffset? SlowStartUntil,
    BudgetView? Requests, BudgetView? Tokens, double TokensPerCall)
{
    public static RateControlView? From(RateControlSnapshot? snapshot) => snapshot is null
        ? null
        : new RateControlView(Math.Round(snapshot.AdaptiveCap, 2), snapshot.HeldUntil, Math.Round(snapshot.HeldSeconds, 3), snapshot.SlowStartUntil,
            Budget(snapshot.Requests), Budget(snapshot.Tokens), Math.Round(snapshot.TokensPerCall, 1));

    private static BudgetView? Budget(BudgetSnapshot? budget) => budget is null
        ? null
        : new BudgetView(budget.PerMinute, budget.Source == LimitSource.Learned ? "learned" : "configured", budget.ProviderLimit,
            budget.ProviderRemaining, Math.Round(budget.Available, 1), Math.Round(budget.Capacity, 1));
}

/// <summary>Why <c>POST /v1/pools/{name}/pause</c> pauses the pool; optional.</summary>
public sealed record PoolPauseRequest(string? Reason);

/// <summary>
/// A pool's configuration (never a key: only the name of the variable holding it), live figures,
/// whether it is paused and why, and the tokens and cost of every batch submitted to it.
/// </summary>
public sealed record PoolView(
    string Name,
    string Provider,
    string? Endpoint,
    string Model,
    string? ApiKeyEnv,
    int MaxRunning,
    long MaxQueued,
    int? Rpm,
    long? Tpm,
    double CooldownSeconds,
    double SlowStartSeconds,
    double LeaseSeconds,
    int Running,
    long Queued,
    int EffectiveCap,
    DateTimeOffset? CooldownUntil,
    DateTimeOffset? RecoveringUntil,
    long RateLimited,
    int RequestsLastMinute,
    long TokensLastMinute,
    int Batches,
    string Silo,
    bool Paused,
    string? PausedReason,
    long InputTokens,
    long OutputTokens,
    long CachedTokens,
    decimal? Cost,
    double BurstSeconds,
    double CapDecrease,
    double CapIncreasePerSuccess,
    double DecreaseWindowSeconds,
    int ExhaustedAfterWindows,
    double ExhaustedWaitSeconds,
    double LearnedLimitShare,
    int DefaultMaxTokens,
    RateControlView? RateControl,
    string[]? Models)
{
    /// <summary>The teams' and users' limits of the pool, with what runs under each (as <c>GET /v1/pools/{name}/limits</c>).</summary>
    public LimitsView? Limits { get; init; }

    public static PoolView From(PoolSnapshot snapshot, TokenTotals usage, PriceTable prices)
    {
        var config = snapshot.Config;
        return new PoolView(snapshot.Name, config.Model.Provider, config.Model.Endpoint, config.Model.Model, config.Model.ApiKeyEnvironmentVariable,
            config.MaxRunning, config.MaxQueued, config.Rpm, config.Tpm, config.DefaultCooldown.TotalSeconds, config.SlowStart.TotalSeconds,
            config.LeaseDuration.TotalSeconds, snapshot.Running, snapshot.Queued, snapshot.EffectiveCap, snapshot.CooldownUntil,
            snapshot.RecoveringUntil, snapshot.RateLimited, snapshot.RequestsLastMinute, snapshot.TokensLastMinute, snapshot.Batches, snapshot.Silo,
            snapshot.PausedReason is not null, snapshot.PausedReason, usage.InputTokens, usage.OutputTokens, usage.CachedTokens,
            prices.Cost(config.Model.Model, new TokenUsage(usage.InputTokens, usage.OutputTokens, usage.CachedTokens)),
            config.BurstWindow.TotalSeconds, config.CapDecrease, config.CapIncreasePerSuccess, config.DecreaseWindow.TotalSeconds,
            config.ExhaustedAfterWindows, config.ExhaustedWait.TotalSeconds, config.LearnedLimitShare, config.DefaultMaxTokens,
            RateControlView.From(snapshot.RateControl), config.Model.Models);
    }
}

public static class PoolsApi
{
    // The pool API's shorthand of old: an endpoint set on a simulated pool without a provider means an
    // OpenAI-compatible one.
    private const string Simulated = "simulated";
    private const string OpenAiCompatible = "openai";

    public static RouteGroupBuilder MapPoolsApi(this IEndpointRouteBuilder endpoints)
    {
        var pools = endpoints.MapGroup("/v1/pools").WithTags("Pools").AddEndpointFilter(TeamScope.AdminsChange);
        pools.MapGet("/", ListAsync);
        pools.MapGet("/{name}", GetAsync);
        pools.MapPut("/{name}", PutAsync);
        pools.MapPost("/{name}/pause", PauseAsync);
        pools.MapPost("/{name}/resume", ResumeAsync);
        pools.MapLimits();
        return pools;
    }

    private static async Task<Ok<List<PoolView>>> ListAsync(IGrainFactory grains, IItemCatalogue store, IOptions<PriceTable> prices, CancellationToken cancellationToken)
    {
        var names = await store.ListPoolsAsync(cancellationToken);
        var views = await Task.WhenAll(names.Select(name => ViewAsync(grains.GetGrain<IPoolGrain>(name), store, prices.Value, cancellationToken)));
        return TypedResults.Ok(views.ToList());
    }

    private static Task<Results<Ok<PoolView>, ProblemHttpResult>> GetAsync(string name, IGrainFactory grains, IItemCatalogue store, IOptions<PriceTable> prices, CancellationToken cancellationToken) =>
        ControlAsync(name, null, grains, store, prices, cancellationToken);

    /// <summary>Stops the pool granting slots (calls running finish); the reason shows in the pool's <c>pausedReason</c>.</summary>
    private static Task<Results<Ok<PoolView>, ProblemHttpResult>> PauseAsync(string name, PoolPauseRequest? request, IGrainFactory grains, IItemCatalogue store,
        IOptions<PriceTable> prices, CancellationToken cancellationToken) =>
        ControlAsync(name, pool => pool.Pause(string.IsNullOrWhiteSpace(request?.Reason) ? "paused by an operator" : request.Reason), grains, store, prices, cancellationToken);

    private static Task<Results<Ok<PoolView>, ProblemHttpResult>> ResumeAsync(string name, IGrainFactory grains, IItemCatalogue store,
        IOptions<PriceTable> prices, CancellationToken cancellationToken) =>
        ControlAsync(name, pool => pool.Resume(), grains, store, prices, cancellationToken);

    /// <summary>Runs <paramref name="action"/> (if any) on an existing pool and answers with its view; 404 when there is no such pool.</summary>
    private static async Task<Results<Ok<PoolView>, ProblemHttpResult>> ControlAsync(string name, Func<IPoolGrain, Task>? action, IGrainFactory grains, IItemCatalogue store,
        IOptions<PriceTable> prices, CancellationToken cancellationToken)
    {
        var pool = grains.GetGrain<IPoolGrain>(name);
        if (await pool.GetConfig() is null)
        {
            return Problems.NotFound($"pool '{name}' does not exist");
        }

        if (action is not null)
        {
            await action(pool);
        }

        return TypedResults.Ok(await ViewAsync(pool, store, prices.Value, cancellationToken));
    }

    private static async Task<PoolView> ViewAsync(IPoolGrain pool, IItemCatalogue store, PriceTable prices, CancellationToken cancellationToken) =>
        PoolView.From(await pool.GetSnapshot(), await store.GetPoolUsageAsync(pool.GetPrimaryKeyString(), cancellationToken), prices)
            with { Limits = LimitsApi.View(await pool.GetLimits()) };

    private static async Task<Results<Ok<PoolView>, ProblemHttpResult>> PutAsync(string name, PoolRequest request, IGrainFactory grains, IItemCatalogue store,
        IOptions<PriceTable> prices, IModelProviderCatalog providers, CancellationToken cancellationToken)
    {
        if (Validate(name, request, providers) is { } problem)
        {
            return Problems.BadRequest(problem);
        }

        var pool = grains.GetGrain<IPoolGrain>(name);
        await pool.Configure(ToConfig(request, await pool.GetConfig()));
        return TypedResults.Ok(await ViewAsync(pool, store, prices.Value, cancellationToken));
    }

    /// <summary>What the request sets replaces the pool's current configuration (or the defaults); what it omits stays.</summary>
    public static PoolConfig ToConfig(PoolRequest request, PoolConfig? current)
    {
        var config = current ?? new PoolConfig();
        var model = config.Model with
        {
            Provider = request.Provider ?? (request.Endpoint is not null && config.Model.Provider == Simulated ? OpenAiCompatible : config.Model.Provider),
            Endpoint = request.Endpoint ?? config.Model.Endpoint,
            Model = request.Model ?? request.Models?.FirstOrDefault() ?? config.Model.Model,
            Models = request.Models ?? config.Model.Models,
            ApiKeyEnvironmentVariable = request.ApiKeyEnv ?? config.Model.ApiKeyEnvironmentVariable,
        };
        return config with
        {
            Model = model,
            MaxRunning = request.MaxRunning ?? config.MaxRunning,
            MaxQueued = request.MaxQueued ?? config.MaxQueued,
            Rpm = request.Rpm ?? config.Rpm,
            Tpm = request.Tpm ?? config.Tpm,
            DefaultCooldown = request.CooldownSeconds is { } cooldown ? TimeSpan.FromSeconds(cooldown) : config.DefaultCooldown,
            SlowStart = request.SlowStartSeconds is { } slowStart ? TimeSpan.FromSeconds(slowStart) : config.SlowStart,
            LeaseDuration = request.LeaseSeconds is { } lease ? TimeSpan.FromSeconds(lease) : config.LeaseDuration,
            BurstWindow = request.BurstSeconds is { } burst ? TimeSpan.FromSeconds(burst) : config.BurstWindow,
            CapDecrease = request.CapDecrease ?? config.CapDecrease,
            CapIncreasePerSuccess = request.CapIncreasePerSuccess ?? config.CapIncreasePerSuccess,
            DecreaseWindow = request.DecreaseWindowSeconds is { } window ? TimeSpan.FromSeconds(window) : config.DecreaseWindow,
            ExhaustedAfterWindows = request.ExhaustedAfterWindows ?? config.ExhaustedAfterWindows,
            ExhaustedWait = request.ExhaustedWaitSeconds is { } exhausted ? TimeSpan.FromSeconds(exhausted) : config.ExhaustedWait,
            LearnedLimitShare = request.LearnedLimitShare ?? config.LearnedLimitShare,
            DefaultMaxTokens = request.DefaultMaxTokens ?? config.DefaultMaxTokens,
        };
    }

    /// <summary>
    /// The first problem with the request, naming its field; <c>null</c> when it is valid. A request that names
    /// its provider is judged by that provider's rules on the fields it sets (see <see cref="IModelProviderCatalog"/>).
    /// </summary>
    private static readonly string[] KnownFields = [.. typeof(PoolRequest).GetProperties()
        .Where(property => property.Name != nameof(PoolRequest.UnknownFields))
        .Select(property => JsonNamingPolicy.CamelCase.ConvertName(property.Name))];

    public static string? Validate(string name, PoolRequest request, IModelProviderCatalog providers) => 0 switch
    {
        _ when name.Length is 0 or > 128 || name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')) =>
            "pool name: 1 to 128 letters, digits, '-', '_' or '.'",
        _ when request.Models is { } models && (models.Length is 0 or > 64 || models.Any(string.IsNullOrWhiteSpace) || models.Distinct(StringComparer.Ordinal).Count() != models.Length) =>
            "models: 1 to 64 distinct, non-empty model names",
        _ when request.Models is { } models && request.Model is { } model && !models.Contains(model, StringComparer.Ordinal) =>
            $"model: '{model}' is not one of models",
        _ when request.UnknownFields is { Count: > 0 } unknown =>
            $"unknown field(s) {string.Join(", ", unknown.Keys.Select(field => $"'{field}'"))}; a pool has {string.Join(", ", KnownFields)}",
        _ when request.Provider is { } provider && !providers.Names.Contains(provider) => providers.Validate(new ModelBinding { Provider = provider }),
        _ when request.Endpoint is { } endpoint && !(Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https") =>
            "endpoint: must be an absolute http(s) URL",
        _ when request.Provider is { } provider && providers.Validate(new ModelBinding
        {
            Provider = provider,
            Endpoint = request.Endpoint,
            Model = request.Model ?? "",
            ApiKeyEnvironmentVariable = request.ApiKeyEnv,
        }) is { } problem => problem,
        _ when request.ApiKeyEnv is { } variable && (variable.Length == 0 || variable.Any(char.IsWhiteSpace)) =>
            "apiKeyEnv: the name of an environment variable (not the key itself)",
        _ when request.MaxRunning is < 1 or > 100_000 => "maxRunning: from 1 to 100000",
        _ when request.MaxQueued is < 1 => "maxQueued: at least 1",
        _ when request.Rpm is < 1 => "rpm: at least 1",
        _ when request.Tpm is < 1 => "tpm: at least 1",
        _ when request.CooldownSeconds is < 0 or > 3600 => "cooldownSeconds: from 0 to 3600",
        _ when request.SlowStartSeconds is < 0 or > 3600 => "slowStartSeconds: from 0 to 3600",
        _ when request.LeaseSeconds is < 1 or > 3600 => "leaseSeconds: from 1 to 3600",
        _ when request.BurstSeconds is < 0.05 or > 60 => "burstSeconds: from 0.05 to 60",
        _ when request.CapDecrease is <= 0 or >= 1 => "capDecrease: a factor above 0 and below 1",
        _ when request.CapIncreasePerSuccess is <= 0 or > 100 => "capIncreasePerSuccess: above 0, at most 100",
        _ when request.DecreaseWindowSeconds is < 0 or > 3600 => "decreaseWindowSeconds: from 0 to 3600",
        _ when request.ExhaustedAfterWindows is < 1 or > 1000 => "exhaustedAfterWindows: from 1 to 1000",
        _ when request.ExhaustedWaitSeconds is < 0 or > 86400 => "exhaustedWaitSeconds: from 0 to 86400",
        _ when request.LearnedLimitShare is <= 0 or > 1 => "learnedLimitShare: above 0, at most 1",
        _ when request.DefaultMaxTokens is < 0 or > 10_000_000 => "defaultMaxTokens: from 0 to 10000000",
        _ => null,
    };
}
