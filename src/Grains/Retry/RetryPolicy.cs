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
    /// <param name="rateLimitedAttempts">Attempts that ended in a 429 (or an overloaded answer) before this one.</param>
    /// <param name="result">This attempt's result.</param>
    public RetryDecision Decide(int attempts, int rateLimitedAttempts, ModelCallResult result)
    {
        if (result.Status == ModelCallStatus.Succeeded)
        {
            return new RetryDecision.Succeed();
        }

        if (result.RateLimited)
        {
            var rateLimited = rateLimitedAttempts + 1;
            if (rateLimited >= options.MaxRateLimitedAttempts)
            {
                return new RetryDecision.Fail($"rate limited ({result.StatusCode}) on {rateLimited} attempts; the limit is {options.MaxRateLimitedAttempts}");
            }

            return Schedule(rateLimited, result.RetryAfter, rateLimited: true);
        }

        var failed = attempts + 1;
        if (PoolPauseReason(result) is { } reason)
        {
            // The pool is paused until someone fixes it; the item waits for that, due at once, and
            // fails only when this was its last attempt.
            return failed >= options.MaxAttempts
                ? new RetryDecision.Fail($"gave up after {failed} attempts (maxAttempts {options.MaxAttempts}); {reason}")
                : new RetryDecision.RetryAt(time.GetUtcNow(), TimeSpan.Zero, RateLimited: false);
        }

        if (!IsRetryable(result))
        {
            return new RetryDecision.Fail(result.Error ?? $"HTTP {result.StatusCode}");
        }

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

    /// <summary>
    /// Retryable: 408, 409, 429, 5xx, timeouts, connection failures and truncated or malformed bodies.
    /// Every other 4xx (400, 401, 403, 404, 422, …) and a content-filter refusal is permanent.
    /// </summary>
    public static bool IsRetryable(ModelCallResult result) => result.Status switch
    {
        ModelCallStatus.Timeout or ModelCallStatus.NetworkError => true,
        ModelCallStatus.HttpError => result.StatusCode is 408 or 409 or 429 or >= 500,
        _ => false,
    };

    /// <summary>
    /// Why the whole pool must stop, or <c>null</c>: a 401 (bad key) or 404 (no such deployment or
    /// model) would fail every item the same way, so the pool pauses instead of burning through them.
    /// </summary>
    public static string? PoolPauseReason(ModelCallResult result) => result switch
    {
        { Status: ModelCallStatus.HttpError, StatusCode: 401 } =>
            $"the provider refused the credentials (check the key or the identity's access): {result.Error}",
        { Status: ModelCallStatus.HttpError, StatusCode: 404 } =>
            $"the provider does not know the model or deployment (check its name and the endpoint): {result.Error}",
        _ => null,
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
