using System.Net;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http.Json;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Nightshift.Api.Batches;
using Nightshift.Api.Cluster;
using Nightshift.Api.Pools;
using Nightshift.Api.Security;
using Nightshift.Api.Webhooks;

namespace Nightshift.Api;

/// <summary>
/// Nightshift's HTTP API, for a silo's web host or an API-only process that is an Orleans client:
/// either way it reaches the grains through <see cref="IGrainFactory"/>.
/// </summary>
public static class NightshiftApi
{
    /// <summary>Options, problem details, JSON settings, the OpenAPI document and the batches' webhook deliveries.</summary>
    public static IServiceCollection AddNightshiftApi(this IServiceCollection services)
    {
        services.AddOptions<ApiOptions>().BindConfiguration(ApiOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddProblemDetails();
        services.AddOpenApi();
        services.Configure<JsonOptions>(json => json.SerializerOptions.PropertyNamingPolicy = JsonNamingPolicy.CamelCase);
        services.AddOptions<WebhookOptions>().BindConfiguration(WebhookOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddHostedService<WebhookDeliverer>();
        return services;
    }

    /// <summary>Every endpoint: <c>/v1/pools</c>, <c>/v1/batches</c>, <c>/v1/silos</c>, <c>/health</c>, <c>/openapi/v1.json</c>.</summary>
    public static IEndpointRouteBuilder MapNightshiftApi(this WebApplication app)
    {
        app.UseMiddleware<ApiKeyMiddleware>();
        app.MapOpenApi();
        app.MapPoolsApi();
        app.MapBatchesApi();
        app.MapClusterApi();
        return app;
    }

    /// <summary>
    /// Refuses to serve without keys on an address other than loopback, unless anonymous access was
    /// asked for: the API can start and cancel paid work.
    /// </summary>
    public static void EnsureSafeToListen(IConfiguration configuration, ApiOptions options)
    {
        if (options.RequiresKeys || options.AllowAnonymous)
        {
            return;
        }

        var urls = (configuration["urls"] ?? string.Empty).Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Concat(configuration.GetSection("Kestrel:Endpoints").GetChildren().Select(e => e["Url"]).OfType<string>());
        var exposed = urls.Where(url => !IsLoopback(url)).ToList();
        if (exposed.Count > 0)
        {
            throw new OptionsValidationException(ApiOptions.Section, typeof(ApiOptions),
                [$"Refusing to listen on {string.Join(", ", exposed)} without API keys: set Nightshift:Api:Keys, or Nightshift:Api:AllowAnonymous=true behind a gateway that authenticates."]);
        }
    }

    private static bool IsLoopback(string url)
    {
        var host = url.Replace("://+", "://wildcard", StringComparison.Ordinal).Replace("://*", "://wildcard", StringComparison.Ordinal);
        if (!Uri.TryCreate(host, UriKind.Absolute, out var uri))
        {
            return false;
        }

        return uri.IsLoopback || (IPAddress.TryParse(uri.Host.Trim('[', ']'), out var address) && IPAddress.IsLoopback(address));
    }
}
