using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Options;

namespace Nightshift.Api.Security;

/// <summary>
/// When keys are configured, every request but <c>/health</c> must carry <c>Authorization: Bearer
/// &lt;key&gt;</c> with one of them (compared in constant time); otherwise 401 with a problem.
/// </summary>
internal sealed class ApiKeyMiddleware(RequestDelegate next, IOptions<ApiOptions> options)
{
    private readonly byte[][] _keys = [.. options.Value.Keys.Where(k => k.Length > 0).Select(Encoding.UTF8.GetBytes)];

    public async Task InvokeAsync(HttpContext context)
    {
        if (_keys.Length == 0 || context.Request.Path.StartsWithSegments("/health") || Authorized(context.Request))
        {
            await next(context);
            return;
        }

        context.Response.Headers.WWWAuthenticate = "Bearer";
        await Problems.Problem(StatusCodes.Status401Unauthorized, "Unauthorized",
            "send 'Authorization: Bearer <key>' with one of the keys in Nightshift:Api:Keys").ExecuteAsync(context);
    }

    private bool Authorized(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        if (!header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            return false;
        }

        var presented = Encoding.UTF8.GetBytes(header["Bearer ".Length..].Trim());
        var match = false;
        foreach (var key in _keys)
        {
            match |= CryptographicOperations.FixedTimeEquals(presented, key);
        }

        return match;
    }
}
