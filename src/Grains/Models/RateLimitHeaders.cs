using System.ClientModel.Primitives;
using System.Globalization;
using Nightshift.Pools;

namespace Nightshift.Models;

/// <summary>
/// Reads a provider's rate-limit headers: <c>x-ratelimit-limit-requests</c>, <c>-remaining-requests</c>,
/// <c>-reset-requests</c> and the same for <c>-tokens</c>, as OpenAI and Azure OpenAI send them on every
/// answer. Azure answers <c>-1</c> for a figure it does not know; negative figures count as absent.
/// </summary>
internal static class RateLimitHeaders
{
    /// <summary>What the headers say, or <c>null</c> when they carry none of the six figures.</summary>
    public static ProviderRateLimits? Read(PipelineResponseHeaders headers)
    {
        var limits = new ProviderRateLimits(
            Count(headers, "x-ratelimit-limit-requests"), Count(headers, "x-ratelimit-remaining-requests"), Reset(headers, "x-ratelimit-reset-requests"),
            Count(headers, "x-ratelimit-limit-tokens"), Count(headers, "x-ratelimit-remaining-tokens"), Reset(headers, "x-ratelimit-reset-tokens"));
        return limits is (null, null, null, null, null, null) ? null : limits;
    }

    private static long? Count(PipelineResponseHeaders headers, string name) =>
        headers.TryGetValue(name, out var text) && long.TryParse(text, NumberStyles.Integer, CultureInfo.InvariantCulture, out var value) && value >= 0
            ? value
            : null;

    private static TimeSpan? Reset(PipelineResponseHeaders headers, string name) =>
        headers.TryGetValue(name, out var text) && ResetDuration.TryParse(text, out var duration) ? duration : null;
}
