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
        feeds.MapGet("/events", EventsAsync);
        feeds.MapGet("/dashboard/history", HistoryAsync);
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

    /// <summary>The events after <paramref name="after"/>; a user (not an admin) sees no other team's batch in them, so none of the batches' own.</summary>
    private static Ok<IReadOnlyList<DashboardEvent>> EventsAsync(long? after, HttpContext context, DashboardMonitor monitor)
    {
        var events = monitor.EventsAfter(after ?? 0);
        return TypedResults.Ok(Principal.Of(context).Admin ? events : [.. events.Where(e => e.Kind != DashboardMonitor.BatchKind)]);
    }

    /// <summary>The pools' 429s and the batches' throughput; a user sees its team's batches' only.</summary>
    private static async Task<Ok<DashboardHistory>> HistoryAsync(HttpContext context, DashboardMonitor monitor, IItemCatalogue store, CancellationToken cancellationToken)
    {
        var history = monitor.History();
        var principal = Principal.Of(context);
        if (principal.Admin)
        {
            return TypedResults.Ok(history);
        }

        var own = (await store.ListBatchesAsync(null, 0, 1000, cancellationToken, principal.Team)).Select(b => b.BatchId).ToHashSet(StringComparer.Ordinal);
        return TypedResults.Ok(history with { Throughput = history.Throughput.Where(b => own.Contains(b.Key)).ToDictionary(b => b.Key, b => b.Value, StringComparer.Ordinal) });
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
