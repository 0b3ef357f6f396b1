using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
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
}

/// <summary>A pool's configuration (never a key: only the name of the variable holding it) and live figures.</summary>
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
    string Silo)
{
    public static PoolView From(PoolSnapshot snapshot)
    {
        var config = snapshot.Config;
        return new PoolView(snapshot.Name, config.Model.Provider, config.Model.Endpoint, config.Model.Model, config.Model.ApiKeyEnvironmentVariable,
            config.MaxRunning, config.MaxQueued, config.Rpm, config.Tpm, config.DefaultCooldown.TotalSeconds, config.SlowStart.TotalSeconds,
            config.LeaseDuration.TotalSeconds, snapshot.Running, snapshot.Queued, snapshot.EffectiveCap, snapshot.CooldownUntil,
            snapshot.RecoveringUntil, snapshot.RateLimited, snapshot.RequestsLastMinute, snapshot.TokensLastMinute, snapshot.Batches, snapshot.Silo);
    }
}

public static class PoolsApi
{
    public static RouteGroupBuilder MapPoolsApi(this IEndpointRouteBuilder endpoints)
    {
        var pools = endpoints.MapGroup("/v1/pools").WithTags("Pools");
        pools.MapGet("/", ListAsync);
        pools.MapGet("/{name}", GetAsync);
        pools.MapPut("/{name}", PutAsync);
        return pools;
    }

    private static async Task<Ok<List<PoolView>>> ListAsync(IGrainFactory grains, IItemStore store, CancellationToken cancellationToken)
    {
        var names = await store.ListPoolsAsync(cancellationToken);
        var views = await Task.WhenAll(names.Select(name => grains.GetGrain<IPoolGrain>(name).GetSnapshot()));
        return TypedResults.Ok(views.Select(PoolView.From).ToList());
    }

    private static async Task<Results<Ok<PoolView>, ProblemHttpResult>> GetAsync(string name, IGrainFactory grains)
    {
        var pool = grains.GetGrain<IPoolGrain>(name);
        if (await pool.GetConfig() is null)
        {
            return Problems.NotFound($"pool '{name}' does not exist");
        }

        return TypedResults.Ok(PoolView.From(await pool.GetSnapshot()));
    }

    private static async Task<Results<Ok<PoolView>, ProblemHttpResult>> PutAsync(string name, PoolRequest request, IGrainFactory grains)
    {
        if (Validate(name, request) is { } problem)
        {
            return Problems.BadRequest(problem);
        }

        var pool = grains.GetGrain<IPoolGrain>(name);
        await pool.Configure(ToConfig(request, await pool.GetConfig()));
        return TypedResults.Ok(PoolView.From(await pool.GetSnapshot()));
    }

    /// <summary>What the request sets replaces the pool's current configuration (or the defaults); what it omits stays.</summary>
    public static PoolConfig ToConfig(PoolRequest request, PoolConfig? current)
    {
        var config = current ?? new PoolConfig();
        var model = config.Model with
        {
            Provider = request.Provider ?? (request.Endpoint is not null ? ModelProviders.OpenAiCompatible : config.Model.Provider),
            Endpoint = request.Endpoint ?? config.Model.Endpoint,
            Model = request.Model ?? config.Model.Model,
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
        };
    }

    /// <summary>The first problem with the request, naming its field; <c>null</c> when it is valid.</summary>
    public static string? Validate(string name, PoolRequest request) => 0 switch
    {
        _ when name.Length is 0 or > 128 || name.Any(c => !(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.')) =>
            "pool name: 1 to 128 letters, digits, '-', '_' or '.'",
        _ when request.Provider is { } provider && provider is not (ModelProviders.Simulated or ModelProviders.OpenAiCompatible) =>
            $"provider: '{provider}' is not known; use '{ModelProviders.Simulated}' or '{ModelProviders.OpenAiCompatible}'",
        _ when request.Endpoint is { } endpoint && !(Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https") =>
            "endpoint: must be an absolute http(s) URL",
        _ when request.Provider == ModelProviders.OpenAiCompatible && request.Endpoint is null => "endpoint: required for the 'openai' provider",
        _ when request.ApiKeyEnv is { } variable && (variable.Length == 0 || variable.Any(char.IsWhiteSpace)) =>
            "apiKeyEnv: the name of an environment variable (not the key itself)",
        _ when request.MaxRunning is < 1 or > 100_000 => "maxRunning: from 1 to 100000",
        _ when request.MaxQueued is < 1 => "maxQueued: at least 1",
        _ when request.Rpm is < 1 => "rpm: at least 1",
        _ when request.Tpm is < 1 => "tpm: at least 1",
        _ when request.CooldownSeconds is < 0 or > 3600 => "cooldownSeconds: from 0 to 3600",
        _ when request.SlowStartSeconds is < 0 or > 3600 => "slowStartSeconds: from 0 to 3600",
        _ when request.LeaseSeconds is < 1 or > 3600 => "leaseSeconds: from 1 to 3600",
        _ => null,
    };
}
