using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Nightshift.Batches;
using Nightshift.Pools;

namespace Nightshift.Api;

/// <summary>Nightshift's HTTP endpoints, mapped by the silo (or by an API-only process that is an Orleans client).</summary>
public static class NightshiftApi
{
    public static RouteGroupBuilder MapNightshiftApi(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapGet("/health/live", () => TypedResults.Ok(new { status = "live" }));

        var v1 = endpoints.MapGroup("/v1");
        v1.MapGet("/pools/{name}", GetPoolAsync);
        v1.MapGet("/batches/{id}", GetBatchAsync);
        return v1;
    }

    private static async Task<Results<Ok<PoolSnapshot>, ProblemHttpResult>> GetPoolAsync(string name, IGrainFactory grains)
    {
        var pool = grains.GetGrain<IPoolGrain>(name);
        if (await pool.GetConfig() is null)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Pool not found", detail: $"pool '{name}' does not exist");
        }

        return TypedResults.Ok(await pool.GetSnapshot());
    }

    private static async Task<Results<Ok<BatchStatus>, ProblemHttpResult>> GetBatchAsync(string id, IGrainFactory grains)
    {
        var status = await grains.GetGrain<IBatchGrain>(id).GetStatus();
        if (status.State == BatchState.NotFound)
        {
            return TypedResults.Problem(statusCode: StatusCodes.Status404NotFound, title: "Batch not found", detail: $"batch '{id}' does not exist");
        }

        return TypedResults.Ok(status);
    }
}
