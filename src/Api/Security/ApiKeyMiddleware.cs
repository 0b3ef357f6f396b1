using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Extensions;
using Microsoft.Extensions.Options;

namespace Nightshift.Api.Security;

/// <summary>
/// When keys are configured, every request but <c>/health</c> must carry one of them (compared in
/// constant time): <c>Authorization: Bearer &lt;key&gt;</c>, or the <see cref="CookieName"/> cookie a
/// browser gets by opening a page once with <c>?key=&lt;key&gt;</c> (a browser cannot send the header
/// from a link). Otherwise 401 with a problem.
/// </summary>
internal sealed class ApiKeyMiddleware(RequestDelegate next, IOptions<ApiOptions> options)
{
    /// <summary>HTTP-only and same-site strict, so neither scripts nor other sites can use it.</summary>
    public const string CookieName = "nightshift_key";

    private const string KeyParameter = "key";

    private readonly byte[][] _keys = [.. options.Value.Keys.Where(k => k.Length > 0).Select(Encoding.UTF8.GetBytes)];

    public async Task InvokeAsync(HttpContext context)
    {
        var request = context.Request;
        if (_keys.Length == 0 || request.Path.StartsWithSegments("/health"))
        {
            await next(context);
            return;
        }

        if (HttpMethods.IsGet(request.Method) && request.Query[KeyParameter].ToString() is { Length: > 0 } fromLink && Authorized(fromLink))
        {
            // Trade the key in the link for a cookie, and send the browser to the same page without it,
            // so the key stays out of the address bar, the history and later requests' logs.
            context.Response.Cookies.Append(CookieName, fromLink, new CookieOptions
            {
                HttpOnly = true,
                SameSite = SameSiteMode.Strict,
                Secure = request.IsHttps,
                Path = "/",
            });
            var query = QueryString.Create(request.Query.Where(q => q.Key != KeyParameter));
            context.Response.Redirect(UriHelper.BuildRelative(request.PathBase, request.Path, query));
            return;
        }

        if (Authorized(BearerKey(request)) || Authorized(request.Cookies[CookieName]))
        {
            await next(context);
            return;
        }

        context.Response.Headers.WWWAuthenticate = "Bearer";
        await Problems.Problem(StatusCodes.Status401Unauthorized, "Unauthorized",
            "send 'Authorization: Bearer <key>' with one of the keys in Nightshift:Api:Keys (in a browser: open the page once with ?key=<key>)").ExecuteAsync(context);
    }

    private static string? BearerKey(HttpRequest request)
    {
        var header = request.Headers.Authorization.ToString();
        return header.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase) ? header["Bearer ".Length..].Trim() : null;
    }

    private bool Authorized(string? key)
    {
        if (string.IsNullOrEmpty(key))
        {
            return false;
        }

        var presented = Encoding.UTF8.GetBytes(key);
        var match = false;
        foreach (var known in _keys)
        {
            match |= CryptographicOperations.FixedTimeEquals(presented, known);
        }

        return match;
    }
}
