using System.Globalization;
using System.Net.Http.Headers;
using Nightshift.Pools;

namespace Nightshift.Models;

/// <summary>
/// Reads Anthropic's rate-limit headers into the figures rate control learns from:
/// <c>anthropic-ratelimit-requests-limit</c>, <c>-remaining</c>, <c>-reset</c> (an RFC 3339 time) and the same
/// for <c>-tokens</c>, as OpenAI's <c>x-ratelimit-*</c> are read; and the wait an answer asks for.
/// </summary>
internal static class AnthropicRateLimitHeaders
{
    /// <summary>What the headers say, resets as durations from <paramref name="now"/>; <c>null</c> when they carry none of the six figures.</summary>
    public static ProviderRateLimits? Read(HttpResponseHeaders headers, DateTimeOffset now)
    {
        var limits = new ProviderRateLimits(
            Count(headers, "anthropic-ratelimit-requests-limit"), Count(headers, "anthropic-ratelimit-requests-remaining"), Reset(headers, "anthropic-ratelimit-requests-reset", now),
            Count(headers, "anthropic-ratelimit-tokens-limit"), Count(headers, "anthropic-ratelimit-tokens-remaining"), Reset(headers, "anthropic-ratelimit-tokens-reset", now));
        return limits is (null, null, null, null, null, null) ? null : limits;
    }

    /// <summary>
    /// The provider's wait: <c>retry-after</c> (seconds or an HTTP date), else the later of the requests and
    /// tokens resets, as for OpenAI's headers.
    /// </summary>
    public static TimeSpan? Wait(HttpResponseHeaders headers, DateTimeOffset now)
    {
        if (Value(headers, "retry-after") is { } retryAfter)
        {
            if (double.TryParse(retryAfter, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds >= 0)
            {
                return TimeSpan.FromSeconds(seconds);
            }

            if (DateTimeOffset.TryParse(retryAfter, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var date))
            {
                return date > now ? date - now : TimeSpan.Zero;
            }
        }

        var requests = Reset(headers, "anthropic-ratelimit-requests-reset", now);
        var tokens = Reset(headers, "anthropic-ratelimit-tokens-reset", now);
        return requests > tokens || tokens is null ? requests : tokens;
    }

    private static string? Value(HttpResponseHeaders headers, string name) =>
        headers.TryGetValues(name, out var values) ? values.FirstOrDefault() : null;

    private static long? Count(HttpResponseHeaders headers, string name) =>
        long.TryParse(Value(headers, name), NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= 0 ? value : null;

    private static TimeSpan? Reset(HttpResponseHeaders headers, string name, DateTimeOffset now) =>
        DateTimeOffset.TryParse(Value(headers, name), CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at)
            ? (at > now ? at - now : TimeSpan.Zero)
            : null;
}
