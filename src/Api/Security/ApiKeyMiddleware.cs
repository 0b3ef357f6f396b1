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
/// from a link). Otherwise 401 with a problem. The key says who calls (<see cref="Principal"/>): an admin key, or a
/// user's of <c>Nightshift:Api:Principals</c>.
/// </summary>
internal sealed class ApiKeyMiddleware(RequestDelegate next, IOptions<ApiOptions> options)
{
    /// <summary>HTTP-only and same-site strict, so neither scripts nor other sites can use it.</summary>
    public const string CookieName = "nightshift_key";

    private const string KeyParameter = "key";

    /// <summary>What shows every team's work at once: the Orleans dashboard and the metrics.</summary>
    private static readonly string[] AdminOnly = ["/orleans", "/metrics"];

    /// <summary>Every key with whom it stands for: the admin keys, then each principal's.</summary>
    private readonly (byte[] Key, Principal Principal)[] _keys =
    [
        .. options.Value.Keys.Where(k => k.Length > 0).Select(key => (Encoding.UTF8.GetBytes(key), Principal.AdminKey)),
        .. options.Value.Principals.Select(p => (Key: p.Value.ResolveKey(), Principal: new Principal(p.Key, p.Value.Team, p.Value.Admin)))
            .Where(p => p.Key is { Length: > 0 }).Select(p => (Encoding.UTF8.GetBytes(p.Key!), p.Principal)),
    ];

    public async Task InvokeAsync(HttpContext context)
    {
        var request = context.Request;
        if (_keys.Length == 0 || request.Path.StartsWithSegments("/health"))
        {
            await next(context);
            return;
        }

        if (HttpMethods.IsGet(request.Method) && request.Query[KeyParameter].ToString() is { Length: > 0 } fromLink && Authorized(fromLink) is not null)
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

        if ((Authorized(BearerKey(request)) ?? Authorized(request.Cookies[CookieName])) is { } principal)
        {
            if (!principal.Admin && AdminOnly.Any(path => request.Path.StartsWithSegments(path)))
            {
                await Problems.Problem(StatusCodes.Status403Forbidden, "Forbidden",
                    $"{request.Path} shows every team's work: it needs an admin key (Nightshift:Api:Keys, or a principal with Admin=true)").ExecuteAsync(context);
                return;
            }

            Principal.Set(context, principal);
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

    /// <summary>Whom <paramref name="key"/> stands for, or <c>null</c> for no known key; every key is compared, in constant time.</summary>
    private Principal? Authorized(string? key)
    {
        if (string.IsNullOrEmpty(key))
        {
            return null;
        }

        var presented = Encoding.UTF8.GetBytes(key);
        Principal? match = null;
        foreach (var (known, principal) in _keys)
        {
            if (CryptographicOperations.FixedTimeEquals(presented, known))
            {
                match ??= principal;
            }
        }

        return match;
    }
}
