namespace Nightshift.MockModel;

/// <summary>
/// The provider's request and token buckets, checked at a request's arrival. Exact under concurrency:
/// one lock serialises every check and debit, so no two requests spend the same token.
/// </summary>
internal sealed class RateLimits
{
    private readonly Lock _lock = new();
    private readonly TokenBucket? _requests;
    private readonly TokenBucket? _tokens;

    public RateLimits(MockModelOptions options)
    {
        if (options.RequestsPerSecond is { } requestsPerSecond)
        {
            _requests = new TokenBucket(requestsPerSecond, options.BurstSeconds, options.TimeProvider);
        }

        if (options.TokensPerSecond is { } tokensPerSecond)
        {
            _tokens = new TokenBucket(tokensPerSecond, options.BurstSeconds, options.TimeProvider);
        }
    }

    /// <summary>Admits a request costing <paramref name="tokens"/> and debits one request and the tokens, or refuses it and debits nothing.</summary>
    public Admission Admit(int tokens)
    {
        lock (_lock)
        {
            _requests?.Refill();
            _tokens?.Refill();
            var requestsExhausted = _requests is { } requests && !requests.Holds(1);
            var tokensExhausted = _tokens is { } bucket && !bucket.Holds(tokens);
            var retryAfter = TimeSpan.Zero;
            if (requestsExhausted || tokensExhausted)
            {
                retryAfter = TimeSpan.FromTicks(Math.Max(
                    requestsExhausted ? _requests!.UntilHolds(1).Ticks : 0,
                    tokensExhausted ? _tokens!.UntilHolds(tokens).Ticks : 0));
            }
            else
            {
                _requests?.Take(1);
                _tokens?.Take(tokens);
            }

            return new Admission(
                requestsExhausted,
                tokensExhausted,
                retryAfter,
                State(_requests, requestsExhausted),
                State(_tokens, tokensExhausted));
        }
    }

    private static BucketState? State(TokenBucket? bucket, bool exhausted) => bucket is null
        ? null
        : new BucketState((long)Math.Round(bucket.PerSecond * 60), exhausted ? 0 : bucket.Remaining, bucket.UntilFull);
}

/// <summary>The outcome of <see cref="RateLimits.Admit"/>, with what the rate-limit headers report.</summary>
/// <param name="RequestsExhausted">The request bucket had no room for this request.</param>
/// <param name="TokensExhausted">The token bucket had no room for this request's tokens.</param>
/// <param name="RetryAfter">When refused, how long until the exhausted bucket(s) would admit the request.</param>
/// <param name="Requests">The request bucket as checked, after this request's debit; null when requests are unlimited.</param>
/// <param name="Tokens">The token bucket likewise; null when tokens are unlimited.</param>
internal sealed record Admission(bool RequestsExhausted, bool TokensExhausted, TimeSpan RetryAfter, BucketState? Requests, BucketState? Tokens)
{
    public bool Admitted => !RequestsExhausted && !TokensExhausted;
}

/// <param name="LimitPerMinute">The bucket's rate per minute, as OpenAI states its limits.</param>
/// <param name="Remaining">Whole units left (0 for a bucket that refused the request).</param>
/// <param name="UntilFull">How long until the bucket is full again.</param>
internal sealed record BucketState(long LimitPerMinute, long Remaining, TimeSpan UntilFull);
