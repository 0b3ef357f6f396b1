using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Nightshift.Storage;

namespace Nightshift.Api.Security;

/// <summary>
/// What a non-admin caller may reach: a batch of its own team (another team's answers 404, as if it did not exist), and
/// pools to read but not to change (403).
/// </summary>
internal static class TeamScope
{
    /// <summary>On routes with a batch <c>{id}</c>: a batch the caller's team does not own answers 404.</summary>
    public static async ValueTask<object?> OwnBatchesOnly(EndpointFilterInvocationContext invocation, EndpointFilterDelegate next)
    {
        var context = invocation.HttpContext;
        var principal = Principal.Of(context);
        if (!principal.Admin && context.Request.RouteValues.TryGetValue("id", out var value) && value is string batchId)
        {
            var stored = await context.RequestServices.GetRequiredService<IItemCatalogue>().GetBatchAsync(batchId, context.RequestAborted);
            if (stored is null || !principal.Sees(stored.Record.Owner))
            {
                return Problems.NotFound($"batch '{batchId}' does not exist");
            }
        }

        return await next(invocation);
    }

    /// <summary>Anything but a read needs an admin: a user's key may not change pools or their limits.</summary>
    public static async ValueTask<object?> AdminsChange(EndpointFilterInvocationContext invocation, EndpointFilterDelegate next)
    {
        var context = invocation.HttpContext;
        var principal = Principal.Of(context);
        return principal.Admin || HttpMethods.IsGet(context.Request.Method) || HttpMethods.IsHead(context.Request.Method)
            ? await next(invocation)
            : Problems.Problem(StatusCodes.Status403Forbidden, "Forbidden",
                $"user '{principal.User}' may not change pools or limits: that needs an admin key (Nightshift:Api:Keys, or a principal with Admin=true)");
    }
}
