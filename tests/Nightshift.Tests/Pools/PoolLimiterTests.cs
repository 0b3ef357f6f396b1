using Microsoft.Extensions.Time.Testing;
using Nightshift.Pools;

namespace Nightshift.Tests.Pools;

public sealed class PoolLimiterTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 22, 3, 0, 0, TimeSpan.Zero));

    private PoolLimiter Limiter(int maxRunning = 4, long maxQueued = 100_000) =>
        new("gpt", new PoolConfig { MaxRunning = maxRunning, MaxQueued = maxQueued, DefaultCooldown = TimeSpan.FromSeconds(5), SlowStart = TimeSpan.FromSeconds(10) }, epoch: 3, _time);

    [Fact]
    public void AfterAFailover_TheQueuedItemsStillCount_TheBatchesGetSlotsOnlyOnceTheyRejoin_AndTheGoneAreForgotten()
    {
        var before = Limiter(maxQueued: 1_000);
        before.Register("alive", 600, 2, TimeSpan.FromSeconds(45));
        before.Register("gone", 300, 1);
        var after = Limiter(maxQueued: 1_000);

        after.RestoreBatches(before.SaveBatches(), TimeSpan.FromSeconds(30));

        Assert.Equal(900, after.Queued);
        Assert.False(after.Reserve("late", 200, 1).Accepted);
        Assert.Empty(after.Grant());
        after.Register("alive", 590, 2, TimeSpan.FromSeconds(45));
        Assert.Equal("alive", Assert.Single(after.Grant()).BatchId);
        _time.Advance(TimeSpan.FromSeconds(31));
        after.ExpireLeases();
        Assert.Equal(590 - 4, after.Queued);
        Assert.True(after.Reserve("late", 200, 1).Accepted);
    }

    [Fact]
    public void Grant_NeverExceedsMaxRunning_AndGrantsAgainOnlyAfterRelease()
    {
        var limiter = Limiter(maxRunning: 4);
        limiter.Register("a", 100, 1);

        var first = Leases(limiter.Grant());
        Assert.Equal(4, first.Count);
        Assert.Empty(limiter.Grant());
        Assert.Equal(4, limiter.Running);

        Assert.True(limiter.Release(new SlotRelease("a", first[0].Token, ItemTerminal: true, RateLimitedFor: null)));
        var second = Leases(limiter.Grant());
        Assert.Single(second);
        Assert.Equal(4, limiter.Running);
    }

    [Fact]
    public void LargePool_GrantsFreedSlotsInChunks_SoBatchesClaimInBulk()
    {
        var limiter = Limiter(maxRunning: 128);
        limiter.Register("a", 10_000, 1);
        var held = Leases(limiter.Grant());
        Assert.Equal(128, held.Count);
        Assert.Equal(4, limiter.GrantChunk);

        for (var i = 0; i < 3; i++)
        {
            limiter.Release(new SlotRelease("a", held[i].Token, true, null));
            Assert.Empty(limiter.Grant());
        }

        limiter.Release(new SlotRelease("a", held[3].Token, true, null));
        Assert.Equal(4, Leases(limiter.Grant()).Count);
        Assert.Equal(128, limiter.Running);
    }

    [Fact]
    public void Chunking_NeverHoldsBackTheLastSlots_OfASlowStart()
    {
        var limiter = Limiter(maxRunning: 128);
        limiter.Register("a", 10_000, 1);
        var held = Leases(limiter.Grant());
        // A wait this long means the quota is exhausted: a cooldown, then the slow start.
        limiter.Release(new SlotRelease("a", held[0].Token, false, TimeSpan.FromSeconds(40)));
        foreach (var lease in held.Skip(1))
        {
            limiter.Release(new SlotRelease("a", lease.Token, true, null));
        }

        _time.Advance(TimeSpan.FromSeconds(40));
        Assert.Equal(1, limiter.EffectiveCap);
        Assert.Single(Leases(limiter.Grant()));
    }

    [Fact]
    public void Rpm_PacesGrantsSmoothly_WithABurstOfOneSecondsWorth()
    {
        var limiter = new PoolLimiter("gpt", new PoolConfig { MaxRunning = 100, Rpm = 600 }, epoch: 1, _time);
        limiter.Register("a", 1_000, 1);

        Assert.Equal(10, Leases(limiter.Grant()).Count);
        Assert.Empty(limiter.Grant());
        _time.Advance(TimeSpan.FromMilliseconds(500));
        Assert.Equal(5, Leases(limiter.Grant()).Count);
        _time.Advance(TimeSpan.FromSeconds(30));
        Assert.Equal(10, Leases(limiter.Grant()).Count);
        Assert.Equal(25, limiter.RequestsLastMinute);
    }

    [Fact]
    public void SmallRpm_StillGrantsOneCallAtATime()
    {
        var limiter = new PoolLimiter("gpt", new PoolConfig { MaxRunning = 10, Rpm = 15 }, epoch: 1, _time);
        limiter.Register("a", 100, 1);

        Assert.Single(Leases(limiter.Grant()));
        _time.Advance(TimeSpan.FromSeconds(3));
        Assert.Empty(limiter.Grant());
        _time.Advance(TimeSpan.FromSeconds(1));
        Assert.Single(Leases(limiter.Grant()));
    }

    [Fact]
    public void Tpm_ChargesTheEstimateAtTheGrant_AndReconcilesWithTheUsage()
    {
        var limiter = new PoolLimiter("gpt", new PoolConfig { MaxRunning = 10, Tpm = 60_000, DefaultMaxTokens = 250 }, epoch: 1, _time);
        limiter.Register("a", 100, 1);

        // 1,000 tokens a second, a second's burst, 250 per call before any call has reported.
        var leases = Leases(limiter.Grant());
        Assert.Equal(4, leases.Count);
        Assert.All(leases, lease => Assert.Equal(250, lease.EstimateWithMaxTokens));

        // The first call used 20 tokens (230 given back); the next grants are charged the batch's own
        // estimate, which the first call's 100 replaced.
        limiter.Release(new SlotRelease("a", leases[0].Token, true, null, Tokens: 20, EstimatedTokens: 100, Succeeded: true));
        Assert.Equal(2, Leases(limiter.Grant()).Count);
        Assert.Equal(20, limiter.TokensLastMinute);
    }

    [Fact]
    public void WithoutATokenBudget_NoEstimateIsAsked()
    {
        var limiter = Limiter();
        limiter.Register("a", 10, 1);

        Assert.All(Leases(limiter.Grant()), lease => Assert.Null(lease.EstimateWithMaxTokens));
    }

    [Fact]
    public void ReturnedSlots_GiveTheirBudgetBack()
    {
        var limiter = new PoolLimiter("gpt", new PoolConfig { MaxRunning = 10, Rpm = 120 }, epoch: 1, _time);
        limiter.Register("a", 100, 1);
        var leases = Leases(limiter.Grant());
        Assert.Equal(2, leases.Count);

        limiter.ReturnUnused("a", leases.Select(l => l.Token), notBefore: null);

        Assert.Equal(2, Leases(limiter.Grant()).Count);
    }

    [Fact]
    public void Tokens_AreUniqueAndCarryTheEpoch()
    {
        var limiter = Limiter(maxRunning: 50);
        limiter.Register("a", 100, 1);

        var tokens = Leases(limiter.Grant()).Select(l => l.Token).ToList();

        Assert.Equal(tokens.Count, tokens.Distinct().Count());
        Assert.All(tokens, token => Assert.Equal(3, token >> 32));
    }

    [Fact]
    public void Release_OfATokenNotHeld_ChangesNothing()
    {
        var limiter = Limiter();
        limiter.Register("a", 10, 1);
        var lease = Leases(limiter.Grant())[0];

        Assert.True(limiter.Release(new SlotRelease("a", lease.Token, true, null)));
        Assert.False(limiter.Release(new SlotRelease("a", lease.Token, true, null)));
        Assert.Equal(3, limiter.Running);
    }

    [Fact]
    public void TwoBatches_ShareSlotsEqually_WhenSlotsFreeOneAtATime()
    {
        var limiter = Limiter(maxRunning: 2);
        limiter.Register("big", 1_000, 1);
        var held = Leases(limiter.Grant());
        limiter.Register("late", 100, 1);

        var granted = new Dictionary<string, int> { ["big"] = 0, ["late"] = 0 };
        for (var i = 0; i < 40; i++)
        {
            var release = held[0];
            held.RemoveAt(0);
            limiter.Release(new SlotRelease("any", release.Token, true, null));
            foreach (var (batch, leases) in limiter.Grant())
            {
                granted[batch] += leases.Count;
                held.AddRange(leases);
            }
        }

        Assert.Equal(20, granted["late"]);
        Assert.Equal(20, granted["big"]);
    }

    [Fact]
    public void Priority_WeighsTheShare()
    {
        var limiter = Limiter(maxRunning: 30);
        limiter.Register("high", 1_000, 2);
        limiter.Register("low", 1_000, 1);

        var grants = limiter.Grant().ToDictionary(g => g.BatchId, g => g.Leases.Count);

        Assert.Equal(20, grants["high"]);
        Assert.Equal(10, grants["low"]);
    }

    [Fact]
    public void Reserve_RefusesWhole_PastMaxQueued()
    {
        var limiter = Limiter(maxQueued: 100);

        Assert.True(limiter.Reserve("a", 60, 1).Accepted);
        var refused = limiter.Reserve("b", 41, 1);

        Assert.False(refused.Accepted);
        Assert.Contains("maxQueued of 100", refused.Reason);
        Assert.Equal(60, limiter.Queued);
        Assert.True(limiter.Reserve("c", 40, 1).Accepted);
    }

    [Fact]
    public void ReservedBatch_GetsNoSlots_UntilItRegisters()
    {
        var limiter = Limiter(maxRunning: 4);
        Assert.True(limiter.Reserve("a", 10, 1).Accepted);

        Assert.Empty(limiter.Grant());
        Assert.Equal(10, limiter.Queued);

        limiter.Register("a", 10, 1);
        Assert.Equal(4, Leases(limiter.Grant()).Count);
    }

    [Fact]
    public void RateLimit_WithoutHeaders_HoldsTheWholePoolForTheWait_AndShrinksTheCap()
    {
        var limiter = Limiter(maxRunning: 10);
        limiter.Register("a", 1_000, 1);
        var leases = Leases(limiter.Grant());

        limiter.Release(new SlotRelease("a", leases[0].Token, false, TimeSpan.FromSeconds(3)));
        Assert.Equal(0, limiter.EffectiveCap);
        Assert.Empty(limiter.Grant());
        Assert.Equal(_time.GetUtcNow() + TimeSpan.FromSeconds(3), limiter.CooldownUntil);

        _time.Advance(TimeSpan.FromSeconds(3));
        Assert.Null(limiter.CooldownUntil);
        Assert.Equal(7, limiter.EffectiveCap);
    }

    [Fact]
    public void RateLimit_WithoutAWait_UsesTheDefaultCooldown()
    {
        var limiter = Limiter();
        limiter.Register("a", 10, 1);
        var lease = Leases(limiter.Grant())[0];

        limiter.Release(new SlotRelease("a", lease.Token, false, TimeSpan.Zero));

        Assert.Equal(_time.GetUtcNow() + TimeSpan.FromSeconds(5), limiter.CooldownUntil);
        Assert.Equal(1, limiter.RateLimited);
    }

    [Fact]
    public void ReturnUnused_HoldsTheBatchUntilItsNextItemIsDue()
    {
        var limiter = Limiter(maxRunning: 4);
        limiter.Register("a", 10, 1);
        var leases = Leases(limiter.Grant());

        limiter.ReturnUnused("a", leases.Select(l => l.Token), _time.GetUtcNow() + TimeSpan.FromSeconds(2));
        Assert.Equal(0, limiter.Running);
        Assert.Empty(limiter.Grant());

        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(4, Leases(limiter.Grant()).Count);
    }

    [Fact]
    public void ReturnUnused_WithoutAHold_IsGrantedAgainAtOnce()
    {
        var limiter = Limiter(maxRunning: 4);
        limiter.Register("a", 10, 1);
        var leases = Leases(limiter.Grant());

        limiter.ReturnUnused("a", leases.Skip(1).Select(l => l.Token), notBefore: null);

        Assert.Equal(1, limiter.Running);
        Assert.Equal(3, Leases(limiter.Grant()).Count);
    }

    [Fact]
    public void OnlyTerminalReleases_ReduceWhatABatchHasOutstanding()
    {
        var limiter = Limiter(maxRunning: 2);
        limiter.Register("a", 2, 1);
        var leases = Leases(limiter.Grant());

        limiter.Release(new SlotRelease("a", leases[0].Token, ItemTerminal: false, RateLimitedFor: null));
        Assert.Equal(1, limiter.Queued);
        limiter.Release(new SlotRelease("a", leases[1].Token, ItemTerminal: true, RateLimitedFor: null));
        Assert.Equal(1, limiter.Queued);

        Assert.Single(Leases(limiter.Grant()));
    }

    [Fact]
    public void PausedBatch_GetsNothing_AndTheOtherGetsEverything()
    {
        var limiter = Limiter(maxRunning: 4);
        limiter.Register("paused", 10, 1);
        limiter.Register("running", 10, 1);
        limiter.SetPaused("paused", true);

        var grants = limiter.Grant();

        Assert.Equal("running", Assert.Single(grants).BatchId);
        Assert.Equal(4, grants[0].Leases.Count);
    }

    [Fact]
    public void ExpiredLeases_AreFreed_OnlyOnceTheirCallsCannotBeRunningAnyMore()
    {
        // A holder that stops reporting may be paused, its calls still running at the provider until
        // their attempt timeout: its slots count for the lease (30 s) and that timeout (90 s) together.
        var limiter = Limiter(maxRunning: 2);
        limiter.Register("a", 10, 1, TimeSpan.FromSeconds(90));
        Leases(limiter.Grant());

        _time.Advance(TimeSpan.FromSeconds(119));
        Assert.Equal(0, limiter.ExpireLeases());
        Assert.Empty(limiter.Grant());
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(2, limiter.ExpireLeases());
        Assert.Equal(0, limiter.Running);
    }

    [Fact]
    public void AnAdoptedSlotOfABatchNotRegistered_CountsForTheLongestAttemptTimeoutOfThePool()
    {
        var limiter = Limiter(maxRunning: 2);
        limiter.Register("short", 10, 1, TimeSpan.FromSeconds(5));
        limiter.Register("long", 10, 1, TimeSpan.FromSeconds(60));
        Assert.True(limiter.Renew(new LeaseRenewal("elsewhere", 77, _time.GetUtcNow() + TimeSpan.FromSeconds(30))));

        _time.Advance(TimeSpan.FromSeconds(89));
        Assert.Equal(0, limiter.ExpireLeases());
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(1, limiter.ExpireLeases());
    }

    [Fact]
    public void RenewedLeases_DoNotExpire()
    {
        var limiter = Limiter(maxRunning: 2);
        limiter.Register("a", 10, 1, TimeSpan.FromSeconds(10));
        var leases = Leases(limiter.Grant());

        _time.Advance(TimeSpan.FromSeconds(20));
        Assert.False(limiter.Renew(new LeaseRenewal("a", leases[0].Token, _time.GetUtcNow() + TimeSpan.FromSeconds(30))));
        _time.Advance(TimeSpan.FromSeconds(21));

        Assert.Equal(1, limiter.ExpireLeases());
        Assert.Equal(1, limiter.Running);
    }

    [Fact]
    public void AfterAFailover_NothingIsGranted_UntilLiveHoldersHaveRenewed_AndTheirSlotsCount()
    {
        var before = Limiter(maxRunning: 4);
        before.Register("a", 100, 1);
        var held = Leases(before.Grant());

        var after = new PoolLimiter("gpt", before.Config, epoch: 4, _time);
        after.BeginRecovery(TimeSpan.FromSeconds(12));
        after.Register("a", 100, 1);
        Assert.Empty(after.Grant());

        Assert.True(after.Renew(new LeaseRenewal("a", held[0].Token, _time.GetUtcNow() + TimeSpan.FromSeconds(30))));
        Assert.True(after.Renew(new LeaseRenewal("a", held[1].Token, _time.GetUtcNow() + TimeSpan.FromSeconds(30))));
        _time.Advance(TimeSpan.FromSeconds(12));

        var granted = Leases(after.Grant());
        Assert.Equal(2, granted.Count);
        Assert.All(granted, lease => Assert.Equal(4, lease.Epoch));
        Assert.Equal(4, after.Running);
        Assert.True(after.Release(new SlotRelease("a", held[0].Token, true, null)));
        Assert.Single(Leases(after.Grant()));
    }

    [Fact]
    public void AfterAFailover_TheSavedSlotsCountAtOnce_UntilTheirHoldersRenewThemOrTheirDeadlinePasses()
    {
        var before = Limiter(maxRunning: 4);
        before.Register("frozen", 100, 1, TimeSpan.FromSeconds(20));
        before.Register("live", 100, 1, TimeSpan.FromSeconds(20));
        var held = before.Grant().ToDictionary(grant => grant.BatchId, grant => grant.Leases);

        var after = new PoolLimiter("gpt", before.Config, epoch: 4, _time);
        after.RestoreBatches(before.SaveBatches(), TimeSpan.FromSeconds(30));
        after.RestoreSlots(before.SaveSlots(), TimeSpan.FromSeconds(4));
        after.Register("live", 100, 1, TimeSpan.FromSeconds(20));
        after.Register("waiting", 100, 1, TimeSpan.FromSeconds(20));

        // Granting goes on at once, in the room the saved slots leave: none.
        Assert.Equal(4, after.Running);
        Assert.Empty(after.Grant());

        // A restored slot is not asked back (its holder may be frozen), a renewed one may be.
        Assert.DoesNotContain(after.Revocations(poolPaused: false), revoked => revoked.BatchId == "frozen");
        _time.Advance(TimeSpan.FromSeconds(20));
        foreach (var lease in held["live"])
        {
            Assert.False(after.Renew(new LeaseRenewal("live", lease.Token, _time.GetUtcNow() + TimeSpan.FromSeconds(30))));
        }

        Assert.Contains(after.Revocations(poolPaused: false), revoked => revoked.BatchId == "live");

        // The frozen holder's slots: counted for their lease (30 s), attempt timeout (20 s) and the margin (4 s).
        _time.Advance(TimeSpan.FromSeconds(33));
        Assert.Equal(0, after.ExpireLeases());
        _time.Advance(TimeSpan.FromSeconds(2));
        Assert.Equal(held["frozen"].Count, after.ExpireLeases());
        Assert.Equal(held["live"].Count, after.Running);
        var granted = Leases(after.Grant());
        Assert.Equal(2, granted.Count);
        Assert.All(granted, lease => Assert.Equal(4, lease.Epoch));
    }

    [Fact]
    public void ABatchsOwnCap_HoldsInsideItsShare_AndTheRestGoesToTheOthers()
    {
        var limiter = Limiter(maxRunning: 8);
        limiter.Register("capped", 100, 1, maxRunning: 2);
        limiter.Register("free", 100, 1);

        var granted = limiter.Grant().ToDictionary(grant => grant.BatchId, grant => grant.Leases.Count);

        Assert.Equal((2, 6), (granted["capped"], granted["free"]));
        var free = Leases(limiter.Grant());
        Assert.Empty(free);
        Assert.Empty(limiter.Revocations(poolPaused: false));
    }

    [Fact]
    public void RemovedBatch_KeepsItsRunningSlotsCountedUntilReleased()
    {
        var limiter = Limiter(maxRunning: 2);
        limiter.Register("a", 10, 1);
        var leases = Leases(limiter.Grant());
        limiter.Remove("a");
        limiter.Register("b", 10, 1);

        Assert.Empty(limiter.Grant());
        limiter.Release(new SlotRelease("a", leases[0].Token, true, null));
        Assert.Equal("b", Assert.Single(limiter.Grant()).BatchId);
    }

    [Fact]
    public void SlotsAreHot_UnlessABudgetPacesThePool()
    {
        var free = Limiter(maxRunning: 2);
        free.Register("a", 10, 1);
        Assert.All(Leases(free.Grant()), lease => Assert.True(lease.Hot));

        var paced = new PoolLimiter("gpt", new PoolConfig { MaxRunning = 2, Rpm = 600 }, epoch: 3, _time);
        paced.Register("a", 10, 1);
        Assert.All(Leases(paced.Grant()), lease => Assert.False(lease.Hot));
    }

    [Fact]
    public void Kept_HoldsTheSlot_ExtendsItsLease_AndCountsTheCall()
    {
        var limiter = Limiter(maxRunning: 2);
        limiter.Register("a", 10, 1, TimeSpan.FromSeconds(10));
        var held = Leases(limiter.Grant());

        _time.Advance(TimeSpan.FromSeconds(25));
        Assert.True(limiter.Kept(new SlotRelease("a", held[0].Token, ItemTerminal: true, RateLimitedFor: null, Succeeded: true)));
        _time.Advance(TimeSpan.FromSeconds(16));

        // The kept slot counts 30 s + 10 s from the report; the other one, never renewed, was freed.
        Assert.Equal(1, limiter.ExpireLeases());
        Assert.Equal(1, limiter.Running);
        Assert.Equal(3, limiter.RequestsLastMinute);
        Assert.Equal(8, limiter.Queued);
    }

    [Fact]
    public void Kept_ForASlotNoLongerHeld_CountsTheCallButHoldsNothing()
    {
        var limiter = Limiter(maxRunning: 2);
        limiter.Register("a", 10, 1);
        var held = Leases(limiter.Grant());
        limiter.ReturnUnused("a", [held[0].Token], null);

        Assert.False(limiter.Kept(new SlotRelease("a", held[0].Token, ItemTerminal: true, RateLimitedFor: null)));
        Assert.Equal(1, limiter.Running);
        Assert.Equal(8, limiter.Queued);
    }

    [Fact]
    public void Kept_ForASlotThePoolNeverHeld_AdoptsIt_ForItsBatchRunsCallsOnIt()
    {
        var limiter = Limiter(maxRunning: 2);
        limiter.Register("a", 10, 1);
        Assert.Equal(2, Leases(limiter.Grant()).Count);

        // Granted by the activation before a failover: its batch keeps running calls on it.
        Assert.True(limiter.Kept(new SlotRelease("a", (2L << 32) | 7, ItemTerminal: true, RateLimitedFor: null)));
        Assert.Equal(3, limiter.Running);
        Assert.Empty(limiter.Grant());

        // A report that comes after its slot was given back, long after, adopts it too (it can no longer be late).
        var held = new PoolLimiter("gpt", new PoolConfig { MaxRunning = 2 }, epoch: 3, _time);
        held.Register("a", 10, 1);
        var slot = Leases(held.Grant())[0];
        held.ReturnUnused("a", [slot.Token], null);
        _time.Advance(PoolLimiter.EndedMemory + TimeSpan.FromSeconds(1));
        held.ExpireLeases();
        Assert.True(held.Kept(new SlotRelease("a", slot.Token, ItemTerminal: true, RateLimitedFor: null)));
    }

    [Fact]
    public void Revocations_TakeBackHotSlots_FromABatchOverItsShare_WhenAnotherWaits()
    {
        var limiter = Limiter(maxRunning: 4);
        limiter.Register("big", 1000, 1);
        var big = Leases(limiter.Grant());
        Assert.Empty(limiter.Revocations(poolPaused: false));

        limiter.Register("small", 10, 1);
        var revoked = Assert.Single(limiter.Revocations(poolPaused: false));
        Assert.Equal("big", revoked.BatchId);
        Assert.Equal(2, revoked.Tokens.Count);

        // Asked once: the same slots are not asked for again while their calls run.
        Assert.Empty(limiter.Revocations(poolPaused: false));
        foreach (var token in revoked.Tokens)
        {
            limiter.Release(new SlotRelease("big", token, ItemTerminal: true, RateLimitedFor: null));
        }

        Assert.All(limiter.Grant(), grant => Assert.Equal("small", grant.BatchId));
        Assert.Equal(4, limiter.Running);
        Assert.Equal(4, big.Count);
    }

    [Fact]
    public void Revocations_TakeBackEveryHotSlot_WhilePausedOrHeld_AndThoseOverALoweredCap()
    {
        var limiter = Limiter(maxRunning: 4);
        limiter.Register("a", 1000, 1);
        var held = Leases(limiter.Grant());
        Assert.Equal(4, Assert.Single(limiter.Revocations(poolPaused: true)).Tokens.Count);

        var other = Limiter(maxRunning: 10);
        other.Register("a", 1000, 1);
        var slots = Leases(other.Grant());

        // A 429 with room left lowers the adaptive cap (10 × 0.7 = 7): three slots over it go.
        other.Release(new SlotRelease("a", slots[0].Token, ItemTerminal: false, RateLimitedFor: TimeSpan.Zero,
            Limits: new ProviderRateLimits(null, 5, null, null, null, null)));
        Assert.Equal(7, other.EffectiveCap);
        Assert.Equal(2, Assert.Single(other.Revocations(poolPaused: false)).Tokens.Count);
        Assert.Equal(4, held.Count);
    }

    [Fact]
    public void Revocations_TakeBackTheHotSlots_OfAPausedBatch()
    {
        var limiter = Limiter(maxRunning: 4);
        limiter.Register("a", 1000, 1);
        Leases(limiter.Grant());
        limiter.SetPaused("a", true);

        Assert.Equal(4, Assert.Single(limiter.Revocations(poolPaused: false)).Tokens.Count);
    }

    private static List<ItemLease> Leases(IReadOnlyList<(string BatchId, List<ItemLease> Leases)> grants) =>
        grants.SelectMany(g => g.Leases).ToList();
}
