using Nightshift.Pools;
using Nightshift.Storage;

namespace Nightshift.Batches;

/// <summary>
/// The dispatch cycle of one batch, free of Orleans so it can be tested with a fake clock: it matches the
/// pool's slots with items claimed from the store, keeps a few items claimed ahead so a slot never waits
/// for the store, and starts the next item on a hot slot the moment its call ends, with no round trip
/// through the pool. Every method returns what the batch grain must do (<see cref="DispatchPlan"/>); the
/// grain does the messaging and the store calls. Not thread-safe; the grain's turns serialize every call.
/// </summary>
/// <remarks>
/// Two tokens are in play. A slot's token is the pool's: it counts against the cap and is renewed with the
/// pool. An item's claim token is the batch activation's (<see cref="ClaimTokens"/>), unique per claim across
/// activations and across the pools the batch dispatches on: it fences the item's result in the store. One
/// dispatcher serves one pool: a batch that escalates has one for each pool of its list. Claiming ahead is what the split allows: an item is claimed before the slot it will run on
/// is known.
/// </remarks>
internal sealed class SlotDispatcher(string pool, ClaimTokens tokens, TimeProvider time)
{
    /// <summary>Most items kept claimed ahead of the slots.</summary>
    public const int MaxPrefetch = 128;

    /// <summary>How long a batch whose store had nothing due waits before it claims ahead again, when the store names no due time.</summary>
    public static readonly TimeSpan RecheckDelay = TimeSpan.FromMilliseconds(500);

    /// <summary>Hot slots whose calls run now, by token.</summary>
    private readonly Dictionary<long, ItemLease> _running = [];

    /// <summary>Slots granted (or kept) that wait for an item: the next claim's answer.</summary>
    private readonly List<ItemLease> _free = [];

    /// <summary>Items claimed ahead, in input order, waiting for a slot.</summary>
    private readonly Queue<ClaimedItem> _ready = new();

    /// <summary>Hot slots the pool asked back: freed when their calls end.</summary>
    private readonly HashSet<long> _revoked = [];

    /// <summary>Items started on slots that are not hot (the pool gets those back from the item itself).</summary>
    private readonly HashSet<int> _coldRunning = [];

    private int _claiming;
    private DateTimeOffset _dryUntil = DateTimeOffset.MinValue;

    /// <summary>Whether the batch runs: a paused or cancelled batch starts nothing, and frees what it is given.</summary>
    public bool Dispatching { get; set; } = true;

    /// <summary>The claim leases' duration: the pool's lease duration.</summary>
    public TimeSpan LeaseDuration { get; set; } = new PoolConfig().LeaseDuration;

    /// <summary>Items claimed ahead and not started.</summary>
    public int Ready => _ready.Count;

    /// <summary>Whether a claim is out (its answer not yet taken in).</summary>
    public bool Claiming => _claiming > 0;

    /// <summary>
    /// How many items to keep claimed ahead: as many as the slots in use, so that every call could end at
    /// once and find its next item ready while the claim that refills them runs, between 4 and
    /// <see cref="MaxPrefetch"/>; none while the batch holds no slot.
    /// </summary>
    public int PrefetchTarget
    {
        get
        {
            var slots = _running.Count + _free.Count + _coldRunning.Count;
            return slots == 0 ? 0 : Math.Clamp(slots, 4, MaxPrefetch);
        }
    }

    /// <summary>Slots granted by the pool: each starts a ready item at once, the rest wait for the next claim.</summary>
    public DispatchPlan Granted(IEnumerable<ItemLease> leases)
    {
        var plan = new DispatchPlan();
        if (!Dispatching)
        {
            plan.Unused.AddRange(leases.Select(lease => lease.Token));
            return plan;
        }

        _free.AddRange(leases);
        Match(plan);
        return plan;
    }

    /// <summary>
    /// The claim to send now, if one is wanted: an item for every free slot, plus the prefetch's shortfall
    /// (unless the store had nothing due a moment ago). <c>null</c> while a claim is out or nothing is wanted.
    /// </summary>
    public IReadOnlyList<ItemLease>? NextClaim()
    {
        if (!Dispatching || _claiming > 0)
        {
            return null;
        }

        // Claims ahead in bulk: once the items ready fall to half the target, up to the target.
        var now = time.GetUtcNow();
        var target = PrefetchTarget;
        var ahead = now < _dryUntil || _ready.Count > target / 2 ? 0 : target - _ready.Count;
        var count = Math.Max(0, _free.Count - _ready.Count) + ahead;
        if (count == 0)
        {
            return null;
        }

        _claiming = count;
        var leases = new ItemLease[count];
        for (var i = 0; i < count; i++)
        {
            leases[i] = new ItemLease(pool, tokens.Next(), now + LeaseDuration, LeaseDuration);
        }

        return leases;
    }

    /// <summary>
    /// The store's answer to <see cref="NextClaim"/>: <paramref name="claimed"/> items of the
    /// <paramref name="asked"/> wanted, and when the next pending item is due if it had too few. Slots left
    /// without an item go back to the pool, to be granted again no sooner than that.
    /// </summary>
    public DispatchPlan Claimed(int asked, IReadOnlyList<ClaimedItem> claimed, DateTimeOffset? nextDue)
    {
        _claiming = 0;
        var plan = new DispatchPlan();
        if (!Dispatching)
        {
            plan.Unclaim.AddRange(claimed);
            return plan;
        }

        foreach (var item in claimed)
        {
            _ready.Enqueue(item);
        }

        Match(plan);
        if (claimed.Count < asked)
        {
            var now = time.GetUtcNow();
            _dryUntil = nextDue > now ? nextDue.Value : now + RecheckDelay;
            if (_free.Count > 0)
            {
                plan.Unused.AddRange(_free.Select(slot => slot.Token));
                plan.UnusedNotBefore = nextDue > now ? nextDue : null;
                _free.Clear();
            }
        }

        return plan;
    }

    /// <summary>A claim failed: nothing was claimed, so the free slots go back to the pool, to be granted again after <see cref="RecheckDelay"/>.</summary>
    public DispatchPlan ClaimFailed()
    {
        _claiming = 0;
        var now = time.GetUtcNow();
        _dryUntil = now + RecheckDelay;
        var plan = new DispatchPlan { UnusedNotBefore = _dryUntil };
        plan.Unused.AddRange(_free.Select(slot => slot.Token));
        _free.Clear();
        return plan;
    }

    /// <summary>
    /// A hot slot's call ended. The slot starts the next ready item at once (the call's end is reported to
    /// the pool as kept), or waits for the claim out; it goes back to the pool when it was revoked, the call's
    /// outcome concerns the pool (a 429, a refusal), the batch is not running, or the store has nothing due.
    /// </summary>
    public DispatchPlan Freed(SlotRelease release)
    {
        var plan = new DispatchPlan();
        if (!_running.Remove(release.Token, out var slot))
        {
            // Granted to an earlier activation of this batch, or already given back: the pool's to free.
            plan.Releases.Add(release);
            return plan;
        }

        var revoked = _revoked.Remove(release.Token);
        var keep = Dispatching && !revoked && release.RateLimitedFor is null && release.PausePool is null
            && (_ready.Count > 0 || _claiming > 0 || time.GetUtcNow() >= _dryUntil);
        if (!keep)
        {
            plan.Releases.Add(release);
            return plan;
        }

        // The slot's lease is extended when the pool takes in the kept call; its next call waited for nothing.
        plan.Kept.Add(release);
        _free.Add(slot with { ExpiresAt = time.GetUtcNow() + slot.Duration, WaitingSince = null });
        Match(plan);
        return plan;
    }

    /// <summary>The pool wants these hot slots back: a free one goes back now, a running one when its call ends.</summary>
    public DispatchPlan Revoked(IEnumerable<long> tokens)
    {
        var plan = new DispatchPlan();
        foreach (var token in tokens)
        {
            if (_free.FindIndex(slot => slot.Token == token) is var free and >= 0)
            {
                _free.RemoveAt(free);
                plan.Unused.Add(token);
            }
            else if (_running.ContainsKey(token))
            {
                _revoked.Add(token);
            }
        }

        return plan;
    }

    /// <summary>An item's attempt was reported: a cold slot's item no longer counts toward the prefetch.</summary>
    public void Finished(int index) => _coldRunning.Remove(index);

    /// <summary>Drops a ready item whose claim the store no longer holds (its lease expired and it was requeued).</summary>
    public void Forget(int index)
    {
        if (_ready.Any(item => item.Index == index))
        {
            var kept = _ready.Where(item => item.Index != index).ToList();
            _ready.Clear();
            foreach (var item in kept)
            {
                _ready.Enqueue(item);
            }
        }
    }

    /// <summary>
    /// Gives back what the batch holds and does not use (it pauses, is cancelled or deactivates): the free
    /// slots to the pool, the ready items to the store. Running hot slots are freed as their calls end.
    /// </summary>
    public DispatchPlan Drain()
    {
        var plan = new DispatchPlan();
        plan.Unused.AddRange(_free.Select(slot => slot.Token));
        _free.Clear();
        plan.Unclaim.AddRange(_ready);
        _ready.Clear();
        return plan;
    }

    private void Match(DispatchPlan plan)
    {
        while (_free.Count > 0 && _ready.TryDequeue(out var item))
        {
            var slot = _free[0];
            _free.RemoveAt(0);
            if (slot.Hot)
            {
                _running[slot.Token] = slot;
            }
            else
            {
                _coldRunning.Add(item.Index);
            }

            plan.Starts.Add(new SlotStart(item, slot));
        }
    }
}

/// <summary>
/// The claim tokens of one batch activation, <c>(epoch &lt;&lt; 32) | sequence</c> with the activation's persisted epoch:
/// unique per claim across activations, and across the pools a batch that escalates dispatches on (their dispatchers share one).
/// </summary>
internal sealed class ClaimTokens(long epoch)
{
    private long _sequence;

    public long Next() => (epoch << 32) | ++_sequence;
}

/// <summary>An item to start, under the slot it runs on.</summary>
internal sealed record SlotStart(ClaimedItem Item, ItemLease Slot);

/// <summary>What the batch grain must do after a <see cref="SlotDispatcher"/> step.</summary>
internal sealed class DispatchPlan
{
    /// <summary>Items to start now.</summary>
    public List<SlotStart> Starts { get; } = [];

    /// <summary>Slots to give back to the pool unused (no call ran on them since they were granted or kept).</summary>
    public List<long> Unused { get; } = [];

    /// <summary>When the batch has an item due again, for <see cref="Unused"/>; <c>null</c> for at once.</summary>
    public DateTimeOffset? UnusedNotBefore { get; set; }

    /// <summary>Slots whose calls ended, to free in the pool.</summary>
    public List<SlotRelease> Releases { get; } = [];

    /// <summary>Calls that ended on slots the batch keeps, to report to the pool.</summary>
    public List<SlotRelease> Kept { get; } = [];

    /// <summary>Claimed items the batch will not start: back to pending in the store, as if never claimed.</summary>
    public List<ClaimedItem> Unclaim { get; } = [];
}
