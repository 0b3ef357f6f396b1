using Microsoft.Extensions.Time.Testing;
using Nightshift.Batches;
using Nightshift.Pools;
using Nightshift.Storage;

namespace Nightshift.Tests.Batches;

public sealed class SlotDispatcherTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 1, 3, 0, 0, TimeSpan.Zero));
    private long _slotSequence;

    private SlotDispatcher Dispatcher() => new("gpt", new ClaimTokens(epoch: 7), _time);

    [Fact]
    public void AGrant_ClaimsAnItemPerSlot_PlusItemsAhead_UnderClaimTokensOfTheEpoch()
    {
        var dispatcher = Dispatcher();
        Assert.Null(dispatcher.NextClaim());
        Assert.Empty(dispatcher.Granted(Slots(4)).Starts);

        var claim = Claim(dispatcher);
        Assert.Equal(8, claim.Count);
        Assert.All(claim, lease => Assert.Equal(7, lease.Token >> 32));
        Assert.Equal(claim.Count, claim.Select(lease => lease.Token).Distinct().Count());
        Assert.Equal(_time.GetUtcNow() + dispatcher.LeaseDuration, claim[0].ExpiresAt);

        // One claim at a time.
        Assert.Null(dispatcher.NextClaim());
        var plan = dispatcher.Claimed(claim.Count, Items(claim), nextDue: null);
        Assert.Equal(4, plan.Starts.Count);
        Assert.Equal([0, 1, 2, 3], plan.Starts.Select(start => start.Item.Index));
        Assert.Equal(4, dispatcher.Ready);
    }

    [Fact]
    public void TheDispatchersOfOneBatch_OnSeveralPools_ShareItsClaimTokens_NoneIssuedTwice()
    {
        var tokens = new ClaimTokens(epoch: 3);
        var small = new SlotDispatcher("small", tokens, _time);
        var big = new SlotDispatcher("big", tokens, _time);
        small.Granted(Slots(2));
        big.Granted(Slots(3));

        var claims = Claim(small).Concat(Claim(big)).ToList();

        Assert.Equal(claims.Count, claims.Select(lease => lease.Token).Distinct().Count());
        Assert.All(claims, lease => Assert.Equal(3, lease.Token >> 32));
        Assert.Equal(["big", "small"], claims.Select(lease => lease.Pool).Distinct().Order());
    }

    [Fact]
    public void AFreedHotSlot_StartsTheNextReadyItemAtOnce_AndReportsTheCallAsKept()
    {
        var dispatcher = Dispatcher();
        var started = Start(dispatcher, slots: 2, items: 6);
        var slot = started[0].Slot;

        var plan = dispatcher.Freed(Release(slot));

        var next = Assert.Single(plan.Starts);
        Assert.Equal(slot.Token, next.Slot.Token);
        Assert.Equal(2, next.Item.Index);
        Assert.Null(next.Slot.WaitingSince);
        Assert.Single(plan.Kept);
        Assert.Empty(plan.Releases);
    }

    [Fact]
    public void AFreedSlot_GoesBackToThePool_WhenRevoked_RateLimited_RefusedOrNotDispatching()
    {
        var dispatcher = Dispatcher();
        var started = Start(dispatcher, slots: 4, items: 12);

        Assert.Empty(dispatcher.Revoked([started[0].Slot.Token]).Unused);
        AssertReleased(dispatcher.Freed(Release(started[0].Slot)));
        AssertReleased(dispatcher.Freed(Release(started[1].Slot) with { RateLimitedFor = TimeSpan.FromSeconds(1) }));
        AssertReleased(dispatcher.Freed(Release(started[2].Slot) with { PausePool = "401" }));
        dispatcher.Dispatching = false;
        AssertReleased(dispatcher.Freed(Release(started[3].Slot)));

        static void AssertReleased(DispatchPlan plan)
        {
            Assert.Single(plan.Releases);
            Assert.Empty(plan.Kept);
            Assert.Empty(plan.Starts);
        }
    }

    [Fact]
    public void AFreedSlotTheBatchDoesNotKnow_IsFreedInThePool()
    {
        var plan = Dispatcher().Freed(Release(Slots(1)[0]));

        Assert.Single(plan.Releases);
    }

    [Fact]
    public void AFreedSlot_WithNoItemReady_WaitsForTheClaim_AndStartsWhatItBrings()
    {
        var dispatcher = Dispatcher();
        var started = Start(dispatcher, slots: 2, items: 2);
        Assert.Equal(0, dispatcher.Ready);
        _time.Advance(SlotDispatcher.RecheckDelay);

        var claim = Claim(dispatcher);
        var plan = dispatcher.Freed(Release(started[0].Slot));
        Assert.Single(plan.Kept);
        Assert.Empty(plan.Starts);

        var brought = dispatcher.Claimed(claim.Count, Items(claim, first: 2), nextDue: null);
        Assert.Equal(started[0].Slot.Token, Assert.Single(brought.Starts).Slot.Token);
    }

    [Fact]
    public void WhenTheStoreHasNothingDue_FreeSlotsGoBackUntilTheNextItemIsDue_AndNothingIsClaimedAheadMeanwhile()
    {
        var dispatcher = Dispatcher();
        dispatcher.Granted(Slots(3));
        var claim = Claim(dispatcher);
        var due = _time.GetUtcNow() + TimeSpan.FromSeconds(2);

        var plan = dispatcher.Claimed(claim.Count, Items(claim).Take(1).ToList(), due);

        Assert.Single(plan.Starts);
        Assert.Equal(2, plan.Unused.Count);
        Assert.Equal(due, plan.UnusedNotBefore);
        Assert.Null(dispatcher.NextClaim());

        // A call ending with nothing ready and nothing due is freed.
        Assert.Single(dispatcher.Freed(Release(plan.Starts[0].Slot)).Releases);

        _time.Advance(TimeSpan.FromSeconds(2));
        dispatcher.Granted(Slots(1));
        Assert.NotNull(dispatcher.NextClaim());
    }

    [Fact]
    public void ColdSlots_StartItems_ButAreNeverKept()
    {
        var dispatcher = Dispatcher();
        dispatcher.Granted(Slots(2, hot: false));
        var claim = Claim(dispatcher);
        var plan = dispatcher.Claimed(claim.Count, Items(claim), nextDue: null);

        Assert.Equal(2, plan.Starts.Count);
        Assert.All(plan.Starts, start => Assert.False(start.Slot.Hot));
        Assert.Single(dispatcher.Freed(Release(plan.Starts[0].Slot)).Releases);
    }

    [Fact]
    public void ARevokedFreeSlot_GoesBackAtOnce()
    {
        var dispatcher = Dispatcher();
        var slots = Slots(2);
        dispatcher.Granted(slots);

        var plan = dispatcher.Revoked([slots[1].Token, 12345]);

        Assert.Equal([slots[1].Token], plan.Unused);
    }

    [Fact]
    public void Drain_GivesBackTheFreeSlotsAndTheReadyItems_AndAClaimAnsweredAfterIsGivenBackToo()
    {
        var dispatcher = Dispatcher();
        var started = Start(dispatcher, slots: 2, items: 6);
        dispatcher.Freed(Release(started[0].Slot));
        dispatcher.Freed(Release(started[1].Slot));
        var claim = Claim(dispatcher);
        var free = Slots(1);

        dispatcher.Dispatching = false;
        var drained = dispatcher.Drain();
        Assert.Equal(2, drained.Unclaim.Count);
        Assert.Empty(drained.Unused);
        Assert.Equal(0, dispatcher.Ready);

        var late = dispatcher.Claimed(claim.Count, Items(claim, first: 6), nextDue: null);
        Assert.Equal(claim.Count, late.Unclaim.Count);
        Assert.Empty(late.Starts);
        Assert.Equal([free[0].Token], dispatcher.Granted(free).Unused);
    }

    [Fact]
    public void AFailedClaim_GivesTheFreeSlotsBack_AndLetsTheNextClaimGo()
    {
        var dispatcher = Dispatcher();
        dispatcher.Granted(Slots(2));
        Claim(dispatcher);

        var plan = dispatcher.ClaimFailed();

        Assert.Equal(2, plan.Unused.Count);
        Assert.Equal(_time.GetUtcNow() + SlotDispatcher.RecheckDelay, plan.UnusedNotBefore);
        dispatcher.Granted(Slots(1));
        Assert.NotNull(dispatcher.NextClaim());
    }

    [Fact]
    public void ItemsAhead_AreClaimedInBulk_OnceHalfAreUsed()
    {
        var dispatcher = Dispatcher();
        var started = Start(dispatcher, slots: 8, items: 16);
        Assert.Equal(8, dispatcher.Ready);

        for (var i = 0; i < 3; i++)
        {
            dispatcher.Freed(Release(started[i].Slot));
            Assert.Null(dispatcher.NextClaim());
        }

        dispatcher.Freed(Release(started[3].Slot));
        Assert.Equal(4, dispatcher.NextClaim()!.Count);
    }

    [Fact]
    public void Forget_DropsAReadyItem()
    {
        var dispatcher = Dispatcher();
        var started = Start(dispatcher, slots: 1, items: 3);

        dispatcher.Forget(1);

        Assert.Equal(2, Assert.Single(dispatcher.Freed(Release(started[0].Slot)).Starts).Item.Index);
    }

    /// <summary>Grants <paramref name="slots"/> slots and answers the claim with <paramref name="items"/> items.</summary>
    private List<SlotStart> Start(SlotDispatcher dispatcher, int slots, int items)
    {
        dispatcher.Granted(Slots(slots));
        var claim = Claim(dispatcher);
        return dispatcher.Claimed(claim.Count, Items(claim).Take(items).ToList(), nextDue: null).Starts;
    }

    private static IReadOnlyList<ItemLease> Claim(SlotDispatcher dispatcher) =>
        dispatcher.NextClaim() ?? throw new InvalidOperationException("no claim wanted");

    private List<ItemLease> Slots(int count, bool hot = true) =>
        [.. Enumerable.Range(0, count).Select(_ => new ItemLease("gpt", (3L << 32) | ++_slotSequence, _time.GetUtcNow() + TimeSpan.FromSeconds(30),
            TimeSpan.FromSeconds(30), WaitingSince: _time.GetUtcNow(), Hot: hot))];

    private static List<ClaimedItem> Items(IReadOnlyList<ItemLease> claim, int first = 0) =>
        [.. claim.Select((lease, i) => new ClaimedItem(first + i, $"c{first + i}", "{}", 0, 0, lease))];

    private static SlotRelease Release(ItemLease slot) => new("b", slot.Token, ItemTerminal: true, RateLimitedFor: null, Succeeded: true);
}
