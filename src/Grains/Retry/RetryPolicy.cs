using Nightshift.Batches;
using Nightshift.Models;

namespace Nightshift.Retry;

/// <summary>What to do after an attempt.</summary>
public abstract record RetryDecision
{
    private RetryDecision()
    {
    }

    public sealed record Succeed : RetryDecision;

    public sealed record Fail(string Reason) : RetryDecision;

    /// <summary>Try again no earlier than <paramref name="NotBefore"/>; <paramref name="RateLimited"/> when it was a 429.</summary>
    public sealed record RetryAt(DateTimeOffset NotBefore, TimeSpan Delay, bool RateLimited) : RetryDecision;
}

/// <summary>
/// Classifies an attempt's result and schedules the next one: exponential backoff with full jitter,
/// the provider's <c>Retry-After</c> as a floor, and separate budgets for model errors and for 429s.
/// </summary>
public sealed class RetryPolicy(BatchOptions options, TimeProvider time, Func<double> random)
{
    /// <param name="attempts">Attempts that ended in a model error before this one.</param>
    /// <param name="rateLimitedAttempts">Attempts that ended in a 429 before this one.</param>
    /// <param name="result">This attempt's result.</param>
    public RetryDecision Decide(int attempts, int rateLimitedAttempts, ModelCallResult result)
    {
        if (result.Status == ModelCallStatus.Succeeded)
        {
            return new RetryDecision.Succeed();
        }

        if (result is { Status: ModelCallStatus.HttpError, StatusCode: 429 })
        {
            var rateLimited = rateLimitedAttempts + 1;
            if (rateLimited >= options.MaxRateLimitedAttempts)
            {
                return new RetryDecision.Fail($"rate limited (429) on {rateLimited} attempts; the limit is {options.MaxRateLimitedAttempts}");
            }

            return Schedule(rateLimited, result.RetryAfter, rateLimited: true);
        }

        if (!IsRetryable(result))
        {
            return new RetryDecision.Fail(result.Error ?? $"HTTP {result.StatusCode}");
        }

        var failed = attempts + 1;
        if (failed >= options.MaxAttempts)
        {
            return new RetryDecision.Fail($"gave up after {failed} attempts (maxAttempts {options.MaxAttempts}); last error: {result.Error}");
        }

        return Schedule(failed, result.RetryAfter, rateLimited: false);
    }

    /// <summary>The longest delay full jitter may pick after <paramref name="failures"/> failures.</summary>
    public TimeSpan BackoffCeiling(int failures)
    {
        var exponent = Math.Min(failures - 1, 30);
        var ceiling = options.BaseDelay.TotalMilliseconds * Math.Pow(2, exponent);
        return TimeSpan.FromMilliseconds(Math.Min(ceiling, options.MaxDelay.TotalMilliseconds));
    }

    /// <summary>Retryable: 408, 429, 5xx, timeouts and network errors. Every other 4xx is permanent.</summary>
    public static bool IsRetryable(ModelCallResult result) => result.Status switch
    {
        ModelCallStatus.Timeout or ModelCallStatus.NetworkError => true,
        ModelCallStatus.HttpError => result.StatusCode is 408 or 429 or >= 500,
        _ => false,
    };

    private RetryDecision.RetryAt Schedule(int failures, TimeSpan? retryAfter, bool rateLimited)
    {
        var delay = BackoffCeiling(failures) * random();
        if (retryAfter is { } floor && floor > delay)
        {
            delay = floor;
        }

        return new RetryDecision.RetryAt(time.GetUtcNow() + delay, delay, rateLimited);
    }
}
