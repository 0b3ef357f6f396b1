using Microsoft.Extensions.Time.Testing;
using Nightshift.Batches;
using Nightshift.Models;
using Nightshift.Retry;

namespace Nightshift.Tests.Retry;

public sealed class RetryPolicyTests
{
    private static readonly BatchOptions Options = new()
    {
        MaxAttempts = 5,
        MaxRateLimitedAttempts = 8,
        BaseDelay = TimeSpan.FromSeconds(1),
        MaxDelay = TimeSpan.FromSeconds(20),
    };

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 22, 3, 0, 0, TimeSpan.Zero));

    private RetryPolicy Policy(double random) => new(Options, _time, () => random);

    [Fact]
    public void Success_Succeeds() =>
        Assert.IsType<RetryDecision.Succeed>(Policy(0.5).Decide(0, 0, ModelCallResult.Success("{}", default)));

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 2)]
    [InlineData(3, 4)]
    [InlineData(4, 8)]
    [InlineData(5, 16)]
    [InlineData(6, 20)]
    [InlineData(40, 20)]
    public void BackoffCeiling_DoublesPerFailure_UpToMaxDelay(int failures, int seconds) =>
        Assert.Equal(TimeSpan.FromSeconds(seconds), Policy(0).BackoffCeiling(failures));

    [Theory]
    [InlineData(0.0)]
    [InlineData(0.37)]
    [InlineData(0.999)]
    public void Backoff_IsFullJitter_BetweenZeroAndTheCeiling(double random)
    {
        var decision = Assert.IsType<RetryDecision.RetryAt>(Policy(random).Decide(2, 0, ModelCallResult.Http(503, null, "503")));

        Assert.Equal(TimeSpan.FromSeconds(4) * random, decision.Delay);
        Assert.Equal(_time.GetUtcNow() + decision.Delay, decision.NotBefore);
        Assert.False(decision.RateLimited);
    }

    [Fact]
    public void RetryAfter_IsAFloor()
    {
        var decision = Assert.IsType<RetryDecision.RetryAt>(
            Policy(0.1).Decide(0, 0, ModelCallResult.Http(429, null, "429", TimeSpan.FromSeconds(7))));

        Assert.Equal(TimeSpan.FromSeconds(7), decision.Delay);
        Assert.Equal(_time.GetUtcNow() + TimeSpan.FromSeconds(7), decision.NotBefore);
        Assert.True(decision.RateLimited);
    }

    [Fact]
    public void RetryAfter_ShorterThanTheBackoff_DoesNotShortenIt()
    {
        var decision = Assert.IsType<RetryDecision.RetryAt>(
            Policy(1).Decide(0, 4, ModelCallResult.Http(429, null, "429", TimeSpan.FromSeconds(1))));

        Assert.Equal(TimeSpan.FromSeconds(16), decision.Delay);
    }

    [Fact]
    public void RateLimits_HaveTheirOwnBudget()
    {
        // Four model errors already: one more would exhaust maxAttempts, but a 429 does not count.
        Assert.IsType<RetryDecision.RetryAt>(Policy(0.5).Decide(4, 0, ModelCallResult.Http(429, null, "429")));

        var exhausted = Assert.IsType<RetryDecision.Fail>(Policy(0.5).Decide(0, 7, ModelCallResult.Http(429, null, "429")));
        Assert.Contains("8 attempts", exhausted.Reason);
    }

    [Fact]
    public void ModelErrors_StopAtMaxAttempts()
    {
        Assert.IsType<RetryDecision.RetryAt>(Policy(0.5).Decide(3, 0, ModelCallResult.Http(500, null, "500 boom")));

        var failed = Assert.IsType<RetryDecision.Fail>(Policy(0.5).Decide(4, 0, ModelCallResult.Http(500, null, "500 boom")));
        Assert.Contains("5 attempts", failed.Reason);
        Assert.Contains("500 boom", failed.Reason);
    }

    [Theory]
    [InlineData(400, false)]
    [InlineData(401, false)]
    [InlineData(403, false)]
    [InlineData(404, false)]
    [InlineData(422, false)]
    [InlineData(408, true)]
    [InlineData(409, true)]
    [InlineData(429, true)]
    [InlineData(500, true)]
    [InlineData(502, true)]
    [InlineData(503, true)]
    public void HttpStatuses_AreClassified(int status, bool retryable) =>
        Assert.Equal(retryable, RetryPolicy.IsRetryable(ModelCallResult.Http(status, null, $"{status}")));

    [Fact]
    public void TimeoutsAndNetworkErrors_AreRetryable()
    {
        Assert.IsType<RetryDecision.RetryAt>(Policy(0.5).Decide(0, 0, ModelCallResult.TimedOut(TimeSpan.FromSeconds(30))));
        Assert.IsType<RetryDecision.RetryAt>(Policy(0.5).Decide(0, 0, ModelCallResult.Network("connection reset")));
    }

    [Fact]
    public void PermanentErrors_FailAtOnce_WithTheProvidersMessage()
    {
        var failed = Assert.IsType<RetryDecision.Fail>(Policy(0.5).Decide(0, 0, ModelCallResult.Http(400, null, "400: messages is required")));
        Assert.Equal("400: messages is required", failed.Reason);
    }

    [Theory]
    [InlineData(401)]
    [InlineData(404)]
    public void RefusedPool_HoldsTheItemDueAtOnce_UntilItsLastAttempt(int status)
    {
        var refused = ModelCallResult.Http(status, null, $"HTTP {status}: nope");
        Assert.Contains($"HTTP {status}: nope", RetryPolicy.PoolPauseReason(refused));

        var held = Assert.IsType<RetryDecision.RetryAt>(Policy(0.5).Decide(0, 0, refused));
        Assert.Equal((_time.GetUtcNow(), TimeSpan.Zero, false), (held.NotBefore, held.Delay, held.RateLimited));
        var failed = Assert.IsType<RetryDecision.Fail>(Policy(0.5).Decide(4, 0, refused));
        Assert.Contains("5 attempts", failed.Reason);
    }

    [Theory]
    [InlineData(400)]
    [InlineData(403)]
    [InlineData(429)]
    [InlineData(500)]
    public void OtherStatuses_DoNotPauseThePool(int status) =>
        Assert.Null(RetryPolicy.PoolPauseReason(ModelCallResult.Http(status, null, $"{status}")));

    [Fact]
    public void ContentFilterRefusal_FailsAtOnce_WithItsReason()
    {
        var failed = Assert.IsType<RetryDecision.Fail>(Policy(0.5).Decide(0, 0, ModelCallResult.ContentFiltered("{}", default, "filtered")));
        Assert.Equal("filtered", failed.Reason);
    }
}
