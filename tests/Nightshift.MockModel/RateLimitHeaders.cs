using System.Globalization;

namespace Nightshift.MockModel;

/// <summary>The rate-limit headers OpenAI sends, written from an <see cref="Admission"/>.</summary>
internal static class RateLimitHeaders
{
    /// <summary>The three <c>x-ratelimit-*</c> headers of each configured bucket; none for an unlimited one.</summary>
    public static void Write(IHeaderDictionary headers, Admission admission)
    {
        Write(headers, "requests", admission.Requests);
        Write(headers, "tokens", admission.Tokens);
    }

    /// <summary><c>retry-after-ms</c> and <c>Retry-After</c> (whole seconds, rounded up), each at least 1 so a client always waits.</summary>
    public static void WriteRetryAfter(IHeaderDictionary headers, TimeSpan wait)
    {
        headers["retry-after-ms"] = Math.Max(1, (long)Math.Ceiling(wait.TotalMilliseconds)).ToString(CultureInfo.InvariantCulture);
        headers.RetryAfter = Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds)).ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// A duration as Go prints it, which is how OpenAI's <c>x-ratelimit-reset-*</c> headers read:
    /// <c>0s</c>, <c>250ms</c>, <c>1.5s</c>, <c>2m3.25s</c>. Rounded up to the millisecond, so a client that
    /// waits that long finds the bucket refilled.
    /// </summary>
    public static string GoDuration(TimeSpan duration)
    {
        var milliseconds = (long)Math.Ceiling(duration.TotalMilliseconds);
        if (milliseconds <= 0)
        {
            return "0s";
        }

        if (milliseconds < 1000)
        {
            return string.Create(CultureInfo.InvariantCulture, $"{milliseconds}ms");
        }

        var hours = milliseconds / 3_600_000;
        var minutes = milliseconds / 60_000 % 60;
        var seconds = string.Create(CultureInfo.InvariantCulture, $"{milliseconds % 60_000 / 1000.0:0.###}s");
        return hours > 0 ? string.Create(CultureInfo.InvariantCulture, $"{hours}h{minutes}m{seconds}")
            : minutes > 0 ? string.Create(CultureInfo.InvariantCulture, $"{minutes}m{seconds}")
            : seconds;
    }

    private static void Write(IHeaderDictionary headers, string unit, BucketState? bucket)
    {
        if (bucket is null)
        {
            return;
        }

        headers[$"x-ratelimit-limit-{unit}"] = bucket.LimitPerMinute.ToString(CultureInfo.InvariantCulture);
        headers[$"x-ratelimit-remaining-{unit}"] = bucket.Remaining.ToString(CultureInfo.InvariantCulture);
        headers[$"x-ratelimit-reset-{unit}"] = GoDuration(bucket.UntilFull);
    }
}
