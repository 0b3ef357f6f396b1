using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Nightshift.Api.Security;
using Nightshift.Batches;
using Nightshift.Storage;

namespace Nightshift.Api.Dashboard;

/// <summary>A failed item as the dashboard lists it.</summary>
public sealed record FailureView(int Index, string CustomId, int? StatusCode, string? Error);

/// <summary>
/// Nightshift's dashboard: a page and its assets under <c>/dashboard</c> (embedded in this assembly,
/// no CDN), and the feeds it reads beside the API's own endpoints: <c>/v1/events</c>,
/// <c>/v1/dashboard/history</c> and <c>/v1/batches/{id}/failures</c>.
/// </summary>
public static class DashboardApi
{
    public const string Path = "/dashboard";

    /// <summary>Where the Orleans dashboard is mapped, linked from Nightshift's.</summary>
    public const string OrleansPath = "/orleans";

    private const int MaxFailures = 200;

    private static readonly Dictionary<string, string> Assets = new(StringComparer.Ordinal)
    {
        ["index.html"] = "text/html; charset=utf-8",
        ["dashboard.js"] = "text/javascript; charset=utf-8",
        ["dashboard.css"] = "text/css; charset=utf-8",
    };

    public static IServiceCollection AddNightshiftDashboard(this IServiceCollection services)
    {
        services.AddSingleton<DashboardMonitor>();
        services.AddHostedService(sp => sp.GetRequiredService<DashboardMonitor>());
        return services;
    }

    public static IEndpointRouteBuilder MapNightshiftDashboard(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet(Path, () => Asset("index.html")).ExcludeFromDescription();
        endpoints.MapGet(Path + "/{file}", (string file) => Asset(file)).ExcludeFromDescription();

        var feeds = endpoints.MapGroup("/v1").WithTags("Dashboard");
        feeds.MapGet("/events", (long? after, DashboardMonitor monitor) => TypedResults.Ok(monitor.EventsAfter(after ?? 0)));
        feeds.MapGet("/dashboard/history", (DashboardMonitor monitor) => TypedResults.Ok(monitor.History()));
        feeds.MapGet("/batches/{id}/failures", FailuresAsync).AddEndpointFilter(TeamScope.OwnBatchesOnly);
        return endpoints;
    }

    private static IResult Asset(string file)
    {
        if (!Assets.TryGetValue(file, out var contentType)
            || typeof(DashboardApi).Assembly.GetManifestResourceStream($"Nightshift.Api.Dashboard.{file}") is not { } content)
        {
            return Problems.NotFound($"'{Path}/{file}' does not exist");
        }

        return TypedResults.Stream(content, contentType);
    }

    /// <summary>The first failed items of a batch with their reasons, in input order.</summary>
    private static async Task<Results<Ok<List<FailureView>>, ProblemHttpResult>> FailuresAsync(string id, int? limit, IGrainFactory grains, IItemCatalogue store, CancellationToken cancellationToken)
    {
        var size = limit ?? 20;
        if (size is < 1 or > MaxFailures)
        {
            return Problems.BadRequest($"limit: from 1 to {MaxFailures}");
        }

        if ((await grains.GetGrain<IBatchGrain>(id).GetStatus()).State == BatchState.NotFound)
        {
            return Problems.NotFound($"batch '{id}' does not exist");
        }

        var failures = await store.ReadResultsAsync(id, cancellationToken)
            .Where(r => r.State == ItemState.Failed)
            .Take(size)
            .Select(r => new FailureView(r.Index, r.CustomId, r.StatusCode, r.Error))
            .ToListAsync(cancellationToken);
        return TypedResults.Ok(failures);
    }
}
