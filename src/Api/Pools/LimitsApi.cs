using System.Collections.Immutable;
using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Nightshift.Pools;

namespace Nightshift.Api.Pools;

/// <summary>A limit as the API shows it, with what runs under it now and what its own rate budgets hold (requests and tokens that could start now).</summary>
public sealed record LimitView(int? MaxRunning, IReadOnlyDictionary<string, ModelLimitView>? Models, double? Weight, double? Rpm, double? Tpm, int Running,
    IReadOnlyDictionary<string, int> RunningByModel, double? RequestsAvailable, double? TokensAvailable);

/// <summary>A limit's figures for one model.</summary>
public sealed record ModelLimitView(int? MaxRunning, double? Rpm, double? Tpm);

/// <summary>A pool's limits: <c>{"teams": {name: limit}, "users": {name: limit}}</c>.</summary>
public sealed record LimitsView(IReadOnlyDictionary<string, LimitView> Teams, IReadOnlyDictionary<string, LimitView> Users);

/// <summary>
/// <c>/v1/pools/{pool}/limits</c>: the teams' and users' limits of a pool (held by its grain, so global across silos).
/// <c>PUT …/limits/teams/{team}</c> or <c>…/limits/users/{user}</c> with <c>{"maxRunning", "rpm", "tpm", "models": {model: {"maxRunning",
/// "rpm", "tpm"}}, "weight"}</c> (every field optional; <c>weight</c> a team's only), <c>DELETE</c> the same path, <c>GET …/limits</c>.
/// </summary>
public static class LimitsApi
{
    private static readonly string[] Fields = ["maxRunning", "models", "weight", "rpm", "tpm"];

    internal static void MapLimits(this RouteGroupBuilder pools)
    {
        pools.MapGet("/{name}/limits", ListAsync);
        pools.MapPut("/{name}/limits/{scope}/{owner}", PutAsync);
        pools.MapDelete("/{name}/limits/{scope}/{owner}", DeleteAsync);
    }

    /// <summary>The limit a JSON document (an HTTP body, or a configuration section as JSON) describes, or the problem with it, naming the field.</summary>
    public static (LimitSpec? Limit, string? Problem) Read(JsonElement body, LimitScope scope, PoolConfig config)
    {
        if (body.ValueKind != JsonValueKind.Object)
        {
            return (null, "the body must be a JSON object");
        }

        if (body.EnumerateObject().Select(p => p.Name).FirstOrDefault(name => !Fields.Contains(name, StringComparer.Ordinal)) is { } unknown)
        {
            return (null, $"unknown field '{unknown}'; known: {string.Join(", ", Fields)}");
        }

        var (maxRunning, problem) = Count(body, "maxRunning", "maxRunning");
        var (rpm, rpmProblem) = PerMinute(body, "rpm", "rpm");
        var (tpm, tpmProblem) = PerMinute(body, "tpm", "tpm");
        if ((problem ?? rpmProblem ?? tpmProblem) is { } bad)
        {
            return (null, bad);
        }

        double? weight = null;
        if (body.TryGetProperty("weight", out var weightValue))
        {
            if (scope != LimitScope.Team)
            {
                return (null, "weight: only a team has a share of the pool; a user's calls take its team's");
            }

            if (weightValue.ValueKind != JsonValueKind.Number || weightValue.GetDouble() is <= 0 or > 1000)
            {
                return (null, "weight: a number more than 0 and at most 1000");
            }

            weight = weightValue.GetDouble();
        }

        ImmutableDictionary<string, ModelLimit>? models = null;
        if (body.TryGetProperty("models", out var modelsValue))
        {
            if (modelsValue.ValueKind != JsonValueKind.Object)
            {
                return (null, "models: an object of {model: {\"maxRunning\": n}}");
            }

            var known = config.Model.Models is { Length: > 0 } listed ? listed : [config.Model.Model];
            var byModel = ImmutableDictionary.CreateBuilder<string, ModelLimit>(StringComparer.Ordinal);
            foreach (var model in modelsValue.EnumerateObject())
            {
                var field = $"models.{model.Name}";
                if (!known.Contains(model.Name, StringComparer.Ordinal))
                {
                    return (null, $"{field}: the pool has no model '{model.Name}' (it has {string.Join(", ", known)})");
                }

                if (model.Value.ValueKind != JsonValueKind.Object)
                {
                    return (null, $"{field}: an object {{\"maxRunning\", \"rpm\", \"tpm\"}}");
                }

                if (model.Value.EnumerateObject().Select(p => p.Name).FirstOrDefault(name => name is not ("maxRunning" or "rpm" or "tpm")) is { } unknownOfModel)
                {
                    return (null, $"{field}: unknown field '{unknownOfModel}'; known: maxRunning, rpm, tpm");
                }

                var (figure, figureProblem) = Count(model.Value, "maxRunning", $"{field}.maxRunning");
                var (modelRpm, rpmOfModel) = PerMinute(model.Value, "rpm", $"{field}.rpm");
                var (modelTpm, tpmOfModel) = PerMinute(model.Value, "tpm", $"{field}.tpm");
                if ((figureProblem ?? rpmOfModel ?? tpmOfModel) is { } badOfModel)
                {
                    return (null, badOfModel);
                }

                if (figure is null && modelRpm is null && modelTpm is null)
                {
                    return (null, $"{field}: maxRunning, rpm or tpm, at least one");
                }

                byModel[model.Name] = new ModelLimit(figure, modelRpm, modelTpm);
            }

            models = byModel.ToImmutable();
        }

        return (new LimitSpec(maxRunning, models, weight, rpm, tpm), null);
    }

    /// <summary>Declares the limits under <c>Nightshift:Pools:{pool}:Limits:Teams|Users:{name}</c> (the same fields as the API's).</summary>
    public static async Task DeclareAsync(IConfigurationSection pool, IPoolGrain grain, PoolConfig config)
    {
        foreach (var (scope, section) in new[] { (LimitScope.Team, "Teams"), (LimitScope.User, "Users") })
        {
            foreach (var declared in pool.GetSection($"Limits:{section}").GetChildren())
            {
                var (limit, problem) = Read(AsJson(declared), scope, config);
                if (problem is not null)
                {
                    throw new InvalidOperationException($"{declared.Path}: {problem}");
                }

                await grain.SetLimit(scope, declared.Key, limit);
            }
        }
    }

    private static async Task<Results<Ok<LimitsView>, ProblemHttpResult>> ListAsync(string name, IGrainFactory grains)
    {
        var pool = grains.GetGrain<IPoolGrain>(name);
        if (await pool.GetConfig() is null)
        {
            return Problems.NotFound($"pool '{name}' does not exist");
        }

        return TypedResults.Ok(View(await pool.GetLimits()));
    }

    private static async Task<Results<Ok<LimitsView>, ProblemHttpResult>> PutAsync(string name, string scope, string owner, HttpContext context, IGrainFactory grains)
    {
        var pool = grains.GetGrain<IPoolGrain>(name);
        if (await pool.GetConfig() is not { } config)
        {
            return Problems.NotFound($"pool '{name}' does not exist");
        }

        if (Scope(scope) is not { } parsed)
        {
            return Problems.NotFound($"no such limits: '{scope}' is not 'teams' or 'users'");
        }

        JsonElement body;
        try
        {
            body = (await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted)).RootElement;
        }
        catch (JsonException malformed)
        {
            return Problems.BadRequest($"the body is not JSON: {malformed.Message}");
        }

        var (limit, problem) = Read(body, parsed, config);
        if (problem is not null)
        {
            return Problems.BadRequest(problem);
        }

        await pool.SetLimit(parsed, owner, limit);
        return TypedResults.Ok(View(await pool.GetLimits()));
    }

    private static async Task<Results<NoContent, ProblemHttpResult>> DeleteAsync(string name, string scope, string owner, IGrainFactory grains)
    {
        var pool = grains.GetGrain<IPoolGrain>(name);
        if (await pool.GetConfig() is null)
        {
            return Problems.NotFound($"pool '{name}' does not exist");
        }

        if (Scope(scope) is not { } parsed || !(await pool.GetLimits()).Any(limit => limit.Scope == parsed && limit.Name == owner))
        {
            return Problems.NotFound($"pool '{name}' has no limit for {scope}/{owner}");
        }

        await pool.SetLimit(parsed, owner, null);
        return TypedResults.NoContent();
    }

    private static LimitScope? Scope(string scope) => scope switch
    {
        "teams" => LimitScope.Team,
        "users" => LimitScope.User,
        _ => null,
    };

    internal static LimitsView View(ImmutableArray<LimitUsage> limits)
    {
        Dictionary<string, LimitView> Of(LimitScope scope) => limits.Where(limit => limit.Scope == scope).ToDictionary(limit => limit.Name, limit => new LimitView(
            limit.Limit.MaxRunning, limit.Limit.Models?.ToDictionary(model => model.Key, model => new ModelLimitView(model.Value.MaxRunning, model.Value.Rpm, model.Value.Tpm), StringComparer.Ordinal),
            limit.Limit.Weight, limit.Limit.Rpm, limit.Limit.Tpm, limit.Running, limit.RunningByModel,
            limit.RequestsAvailable is { } requests ? Math.Round(requests, 2) : null, limit.TokensAvailable is { } tokens ? Math.Round(tokens) : null), StringComparer.Ordinal);
        return new LimitsView(Of(LimitScope.Team), Of(LimitScope.User));
    }

    private static (double? Value, string? Problem) PerMinute(JsonElement limit, string property, string field)
    {
        if (!limit.TryGetProperty(property, out var value))
        {
            return (null, null);
        }

        return value.ValueKind == JsonValueKind.Number && value.GetDouble() is > 0 and <= 1e12 and var rate
            ? (rate, null)
            : (null, $"{field}: a number more than 0 (per minute)");
    }

    private static (int? Value, string? Problem) Count(JsonElement limit, string property, string field)
    {
        if (!limit.TryGetProperty(property, out var value))
        {
            return (null, null);
        }

        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out var count) && count is >= 0 and <= 100_000
            ? (count, null)
            : (null, $"{field}: a whole number from 0 to 100000");
    }

    /// <summary>A configuration section as the JSON the API reads (numbers as numbers, sections as objects).</summary>
    private static JsonElement AsJson(IConfigurationSection section)
    {
        // Field names as the API spells them, whatever their case in configuration; model names as they are.
        static string Name(string key) => Fields.Concat(["maxRunning"]).FirstOrDefault(field => field.Equals(key, StringComparison.OrdinalIgnoreCase)) ?? key;
        static object? Value(IConfigurationSection node) => node.GetChildren().Any()
            ? node.GetChildren().ToDictionary(child => Name(child.Key), Value, StringComparer.Ordinal)
            : double.TryParse(node.Value, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) ? number : node.Value;
        return JsonSerializer.SerializeToElement(Value(section));
    }
}
