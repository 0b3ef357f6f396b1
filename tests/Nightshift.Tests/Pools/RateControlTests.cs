using Microsoft.Extensions.Time.Testing;
using Nightshift.Pools;

namespace Nightshift.Tests.Pools;

public sealed class RateControlTests
{
    private static readonly ProviderRateLimits Room = new(24_000, 300, TimeSpan.FromMilliseconds(250), null, null, null);

    private static readonly ProviderRateLimits Spent = new(24_000, 0, TimeSpan.FromSeconds(5), null, null, null);

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 3, 0, 0, TimeSpan.Zero));

    private RateControl Control(PoolConfig? config = null) => new(config ?? new PoolConfig { MaxRunning = 50 }, _time);

    private static SlotRelease RateLimited(TimeSpan wait, ProviderRateLimits? limits) => new("a", 1, false, wait, Limits: limits);

    private static SlotRelease Success(long tokens = 0, long estimate = 0, ProviderRateLimits? limits = null) =>
        new("a", 1, true, null, tokens, EstimatedTokens: estimate, Succeeded: true, Limits: limits);

    [Fact]
    public void A429WithRoomLeft_ShrinksTheCap_ButDoesNotHoldThePool()
    {
        var control = Control();

        control.Ended(RateLimited(TimeSpan.FromSeconds(1), Room), charged: 0);

        Assert.Equal(35, control.EffectiveCap);
        Assert.Null(control.HeldUntil);
    }

    [Fact]
    public void A429ThatSaysTheQuotaIsSpent_HoldsThePoolForItsWait_ThenRunsAtTheShrunkCap()
    {
        var control = Control();

        control.Ended(RateLimited(TimeSpan.FromSeconds(2), Spent), charged: 0);

        Assert.Equal(0, control.EffectiveCap);
        Assert.Equal(_time.GetUtcNow() + TimeSpan.FromSeconds(2), control.HeldUntil);
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(35, control.EffectiveCap);
        Assert.Null(control.Snapshot().SlowStartUntil);
    }

    [Fact]
    public void A429ThatSaysTheQuotaIsSpent_ButBackSooner_HoldsThePoolOnlyUntilTheReset()
    {
        var control = Control();

        control.Ended(RateLimited(TimeSpan.FromSeconds(1), Spent with { ResetRequests = TimeSpan.FromMilliseconds(20) }), charged: 0);

        Assert.Equal(_time.GetUtcNow() + TimeSpan.FromMilliseconds(20), control.HeldUntil);
        _time.Advance(TimeSpan.FromMilliseconds(20));
        Assert.Equal(35, control.EffectiveCap);
    }

    [Fact]
    public void A429WithoutAnyRemainingFigure_HoldsThePoolForTheWholeWait()
    {
        var control = Control();

        control.Ended(RateLimited(TimeSpan.FromSeconds(1), new ProviderRateLimits(24_000, null, TimeSpan.FromMilliseconds(5), null, null, null)), charged: 0);

        Assert.Equal(_time.GetUtcNow() + TimeSpan.FromSeconds(1), control.HeldUntil);
    }

    [Fact]
    public void A429AtTheEdgeOfABudgetThatPacesWithinTheAdvertisedLimit_HoldsOnlyThroughTheBucket()
    {
        var control = Control(new PoolConfig { MaxRunning = 1_000, Rpm = 24_000 });

        control.Ended(RateLimited(TimeSpan.FromSeconds(1), Spent), charged: 0);

        Assert.Null(control.HeldUntil);
        Assert.Equal(0, control.RequestsAffordable);
        _time.Advance(TimeSpan.FromMilliseconds(10));
        Assert.Equal(4, control.RequestsAffordable);
    }

    [Fact]
    public void A429ThatSaysTheQuotaIsSpent_ToABudgetAboveTheAdvertisedLimit_HoldsThePool()
    {
        var control = Control(new PoolConfig { MaxRunning = 1_000, Rpm = 30_000 });

        control.Ended(RateLimited(TimeSpan.FromSeconds(1), Spent), charged: 0);

        Assert.Equal(_time.GetUtcNow() + TimeSpan.FromSeconds(1), control.HeldUntil);
    }

    [Fact]
    public void ABurstOf429s_InOneWindow_CountsOnce()
    {
        var control = Control();

        for (var i = 0; i < 20; i++)
        {
            control.Ended(RateLimited(TimeSpan.FromSeconds(1), Room), charged: 0);
            _time.Advance(TimeSpan.FromMilliseconds(40));
        }

        Assert.Equal(35, control.AdaptiveCap, precision: 6);
        Assert.Equal(20, control.RateLimited);

        _time.Advance(TimeSpan.FromMilliseconds(400));
        control.Ended(RateLimited(TimeSpan.FromSeconds(1), Room), charged: 0);
        Assert.Equal(24.5, control.AdaptiveCap, precision: 6);
    }

    [Fact]
    public void Successes_RaiseTheCapAdditively_UpToMaxRunning()
    {
        var control = Control();
        control.Ended(RateLimited(TimeSpan.FromSeconds(1), Room), charged: 0);

        for (var i = 0; i < 10; i++)
        {
            control.Ended(Success(), charged: 0);
        }

        Assert.Equal(40, control.EffectiveCap);
        for (var i = 0; i < 100; i++)
        {
            control.Ended(Success(), charged: 0);
        }

        Assert.Equal(50, control.EffectiveCap);
    }

    [Fact]
    public void WindowsOf429sWithoutASuccess_MeanExhaustion_CooldownThenSlowStart()
    {
        var control = Control(new PoolConfig { MaxRunning = 50, SlowStart = TimeSpan.FromSeconds(10) });

        control.Ended(RateLimited(TimeSpan.FromSeconds(1), Spent), charged: 0);
        _time.Advance(TimeSpan.FromSeconds(1));
        control.Ended(RateLimited(TimeSpan.FromSeconds(1), Spent), charged: 0);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Null(control.Snapshot().SlowStartUntil);
        control.Ended(RateLimited(TimeSpan.FromSeconds(1), Spent), charged: 0);

        Assert.Equal(0, control.EffectiveCap);
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, control.EffectiveCap);
        Assert.NotNull(control.Snapshot().SlowStartUntil);
        _time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(17, control.EffectiveCap);
    }

    [Fact]
    public void WindowsOf429s_SeparatedBySuccesses_AreNoExhaustion()
    {
        var control = Control();

        for (var window = 0; window < 10; window++)
        {
            control.Ended(RateLimited(TimeSpan.FromSeconds(1), Room), charged: 0);
            control.Ended(Success(), charged: 0);
            _time.Advance(TimeSpan.FromSeconds(1));
        }

        Assert.Null(control.Snapshot().SlowStartUntil);
        Assert.Null(control.HeldUntil);
    }

    [Fact]
    public void AWaitLongerThanTheThreshold_MeansExhaustion()
    {
        var control = Control(new PoolConfig { MaxRunning = 50, ExhaustedWait = TimeSpan.FromSeconds(30) });

        control.Ended(RateLimited(TimeSpan.FromSeconds(45), Room), charged: 0);

        Assert.Equal(_time.GetUtcNow() + TimeSpan.FromSeconds(45), control.HeldUntil);
        _time.Advance(TimeSpan.FromSeconds(45));
        Assert.Equal(1, control.EffectiveCap);
    }

    [Fact]
    public void RequestBucket_RefillsAtTheBudgetsPace_UpToOneBurst()
    {
        var control = Control(new PoolConfig { MaxRunning = 1_000, Rpm = 6_000 });

        Assert.Equal(100, control.RequestsAffordable);
        for (var i = 0; i < 100; i++)
        {
            Assert.True(control.TryStart(0));
        }

        Assert.False(control.TryStart(0));
        _time.Advance(TimeSpan.FromMilliseconds(250));
        Assert.Equal(25, control.RequestsAffordable);
        _time.Advance(TimeSpan.FromMinutes(5));
        Assert.Equal(100, control.RequestsAffordable);
    }

    [Fact]
    public void TokenBucket_ChargesTheEstimate_RefundsWhatWasNotUsed_AndChargesWhatWasOverUsed()
    {
        var control = Control(new PoolConfig { MaxRunning = 100, Tpm = 60_000 });

        Assert.True(control.TryStart(600));
        Assert.False(control.TryStart(600));

        control.Ended(Success(tokens: 100), charged: 600);
        Assert.Equal(900, control.Snapshot().Tokens!.Available, precision: 6);

        Assert.True(control.TryStart(600));
        control.Ended(Success(tokens: 1_100), charged: 600);
        Assert.Equal(-200, control.Snapshot().Tokens!.Available, precision: 6);
        Assert.False(control.TryStart(100));
        _time.Advance(TimeSpan.FromMilliseconds(300));
        Assert.True(control.TryStart(100));
    }

    [Fact]
    public void ACallWithoutUsage_KeepsItsOwnEstimateCharged_AndA429GivesEverythingBack()
    {
        var control = Control(new PoolConfig { MaxRunning = 100, Tpm = 60_000 });

        Assert.True(control.TryStart(500));
        control.Ended(new SlotRelease("a", 1, false, null, Tokens: 0, EstimatedTokens: 300), charged: 500);
        Assert.Equal(700, control.Snapshot().Tokens!.Available, precision: 6);

        Assert.True(control.TryStart(500));
        control.Ended(RateLimited(TimeSpan.FromSeconds(1), Room with { LimitTokens = null }), charged: 500);
        Assert.Equal(700, control.Snapshot().Tokens!.Available, precision: 6);
    }

    [Fact]
    public void A429sRefund_NeverLiftsTheBucketOverWhatTheProviderSaysRemains()
    {
        var control = Control(new PoolConfig { MaxRunning = 100, Tpm = 60_000 });

        Assert.True(control.TryStart(500));
        control.Ended(RateLimited(TimeSpan.FromSeconds(1), new ProviderRateLimits(null, null, null, 600_000, 0, TimeSpan.FromSeconds(1))), charged: 500);

        Assert.Equal(0, control.Snapshot().Tokens!.Available, precision: 6);
        Assert.Null(control.HeldUntil);
    }

    [Fact]
    public void ACallTooBigForTheWholeBucket_StartsOnceTheBucketIsFull()
    {
        var control = Control(new PoolConfig { MaxRunning = 100, Tpm = 6_000 });

        Assert.True(control.TryStart(5_000));
        Assert.False(control.TryStart(5_000));
        _time.Advance(TimeSpan.FromSeconds(49));
        Assert.False(control.TryStart(5_000));
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.True(control.TryStart(5_000));
    }

    [Fact]
    public void WithoutABudget_TheProvidersAdvertisedLimitsAreLearned_ALittleBelowThem()
    {
        var control = Control();
        Assert.Equal(int.MaxValue, control.RequestsAffordable);
        Assert.False(control.CountsTokens);

        control.Ended(Success(limits: new ProviderRateLimits(24_000, 23_990, TimeSpan.Zero, 600_000, 599_000, TimeSpan.Zero)), charged: 0);

        var snapshot = control.Snapshot();
        Assert.Equal((22_800, LimitSource.Learned, 24_000L), (snapshot.Requests!.PerMinute, snapshot.Requests.Source, snapshot.Requests.ProviderLimit));
        Assert.Equal((570_000, LimitSource.Learned, 600_000L), (snapshot.Tokens!.PerMinute, snapshot.Tokens.Source, snapshot.Tokens.ProviderLimit));
        Assert.True(control.CountsTokens);
        Assert.Equal(380, control.RequestsAffordable);
    }

    [Fact]
    public void AConfiguredBudget_WinsOverTheAdvertisedOne()
    {
        var control = Control(new PoolConfig { MaxRunning = 50, Rpm = 1_200 });

        control.Ended(Success(limits: Room), charged: 0);

        var requests = control.Snapshot().Requests!;
        Assert.Equal((1_200, LimitSource.Configured, 24_000L), (requests.PerMinute, requests.Source, requests.ProviderLimit));
    }

    [Fact]
    public void WhenTheProviderHasLessLeftThanTheBucket_GrantsSlowDownBeforeA429()
    {
        var control = Control(new PoolConfig { MaxRunning = 1_000, Rpm = 24_000 });
        Assert.Equal(400, control.RequestsAffordable);

        control.Ended(Success(limits: Room with { RemainingRequests = 30 }), charged: 0);

        Assert.Equal(30, control.RequestsAffordable);
        _time.Advance(TimeSpan.FromMilliseconds(100));
        Assert.Equal(70, control.RequestsAffordable);
    }

    [Fact]
    public void AfterAFailover_TheBudgetsStartEmpty_AndTheWaitsAndLearnedLimitsHold()
    {
        var config = new PoolConfig { MaxRunning = 50, Tpm = 60_000 };
        var before = Control(config);
        before.Ended(Success(limits: Room), charged: 0);
        before.Ended(RateLimited(TimeSpan.FromSeconds(5), Spent), charged: 0);
        var saved = before.Save();

        var after = Control(config);
        after.Restore(saved);

        Assert.Equal(before.HeldUntil, after.HeldUntil);
        Assert.Equal(before.AdaptiveCap, after.AdaptiveCap);
        Assert.Equal(LimitSource.Learned, after.Snapshot().Requests!.Source);
        Assert.Equal(0, after.RequestsAffordable);
        Assert.Equal(0, after.Snapshot().Tokens!.Available, precision: 6);
        _time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(380, after.RequestsAffordable);
    }

    [Fact]
    public void AfterAFailover_TheLastMinutesRequestsAndTokens_CarryOver_AndAgeOutAsBefore()
    {
        var before = Control();
        Assert.True(before.TryStart(0));
        Assert.True(before.TryStart(0));
        before.Ended(Success(tokens: 300), charged: 0);
        _time.Advance(TimeSpan.FromSeconds(30));
        Assert.True(before.TryStart(0));
        var saved = before.Save();

        var after = Control();
        after.Restore(saved);

        Assert.Equal((3, 300L), (after.RequestsLastMinute, after.TokensLastMinute));
        _time.Advance(TimeSpan.FromSeconds(31));
        Assert.Equal((1, 0L), (after.RequestsLastMinute, after.TokensLastMinute));
    }
}
