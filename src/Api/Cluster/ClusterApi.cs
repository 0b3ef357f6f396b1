using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Nightshift.Storage;

namespace Nightshift.Api.Cluster;

/// <summary>
/// A silo of the cluster as its membership table records it, and the item grains active on it (its
/// calls in flight, or finishing; an item deactivates when its attempt ends).
/// </summary>
public sealed record SiloView(string Address, string Status, string? SiloName, string? HostName, DateTime StartTime, DateTime IAmAliveTime, int ItemsInFlight);

public static class ClusterApi
{
    /// <summary>How Orleans' statistics name the item grain's class.</summary>
    private const string ItemGrainType = "ItemGrain";

    public static IEndpointRouteBuilder MapClusterApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/v1/silos", ListSilosAsync).WithTags("Cluster");
        var health = endpoints.MapGroup("/health").WithTags("Health");
        health.MapGet("/live", () => TypedResults.Ok(new { status = "live" }));
        health.MapGet("/ready", ReadyAsync);
        return endpoints;
    }

    private static async Task<Ok<List<SiloView>>> ListSilosAsync(IGrainFactory grains)
    {
        var management = grains.GetGrain<IManagementGrain>(0);
        var hosts = await management.GetDetailedHosts(onlyActive: false);
        var items = (await management.GetSimpleGrainStatistics())
            .Where(s => s.GrainType.Contains(ItemGrainType, StringComparison.Ordinal))
            .GroupBy(s => s.SiloAddress)
            .ToDictionary(g => g.Key, g => g.Sum(s => s.ActivationCount));
        return TypedResults.Ok(hosts
            .Select(h => new SiloView(h.SiloAddress.ToString(), h.Status.ToString().ToLowerInvariant(), h.SiloName, h.HostName, h.StartTime, h.IAmAliveTime,
                items.GetValueOrDefault(h.SiloAddress)))
            .ToList());
    }

    /// <summary>Ready when the store answers and the cluster has an active silo.</summary>
    private static async Task<Results<Ok<object>, ProblemHttpResult>> ReadyAsync(IItemCatalogue store, IGrainFactory grains, CancellationToken cancellationToken)
    {
        try
        {
            await store.ListPoolsAsync(cancellationToken);
        }
        catch (Exception unreachable) when (unreachable is not OperationCanceledException)
        {
            return Problems.Problem(StatusCodes.Status503ServiceUnavailable, "Not ready", $"the store is not reachable: {unreachable.Message}");
        }

        try
        {
            var active = await grains.GetGrain<IManagementGrain>(0).GetHosts(onlyActive: true, cancellationToken);
            return active.Count > 0
                ? TypedResults.Ok<object>(new { status = "ready", silos = active.Count })
                : Problems.Problem(StatusCodes.Status503ServiceUnavailable, "Not ready", "no active silo in the cluster");
        }
        catch (Exception unreachable) when (unreachable is not OperationCanceledException)
        {
            return Problems.Problem(StatusCodes.Status503ServiceUnavailable, "Not ready", $"the cluster is not reachable: {unreachable.Message}");
        }
    }
}
