using System.Collections.Immutable;
using Nightshift.Batches;

namespace Nightshift.Pools;

/// <summary>
/// The slot accounting of one pool, free of Orleans so it can be tested with a fake clock: the cap on
/// running calls, queue room and fair shares between batches; the adaptive cap and the rate budgets
/// are its <see cref="RateControl"/>'s. Not thread-safe; the pool grain's turns serialize every call.
/// </summary>
/// <remarks>
/// Fairness is stride scheduling: each batch has a virtual "pass" that grows by 1/priority per slot it
/// is granted, and the next slot goes to the waiting batch with the lowest pass. A batch that joins
/// late starts at the current pass, so it neither waits behind a huge batch nor gets a burst to catch up.
/// Hot slots (granted while no budget paces the pool) stay with their batch from call to call, so the pool
/// takes them back explicitly (<see cref="Revocations"/>): the slots over a lowered cap, over a batch's fair
/// share while another batch waits, and every hot slot while the pool is held or a budget is in force.
/// </remarks>
internal sealed class PoolLimiter(string name, PoolConfig config, long epoch, TimeProvider time)
{
    private readonly Dictionary<string, BatchShare> _batches = new(StringComparer.Ordinal);
    private readonly Dictionary<long, Holder> _leases = [];

    /// <summary>Slots their holders gave back lately, by token, with when (see <see cref="EndedMemory"/>).</summary>
    private readonly Dictionary<long, DateTimeOffset> _ended = [];
    private readonly RateControl _rate = new(config, time);
    /// <summary>Each team's pass in the stride between teams (batches with no team share one, <see cref="NoTeam"/>).</summary>
    private readonly Dictionary<string, double> _teamPasses = new(StringComparer.Ordinal);
    private long _sequence;
    private double _virtualPass;
    private double _virtualTeamPass;
    private DateTimeOffset? _recoveringUntil;

    private const string NoTeam = "";

    public PoolConfig Config
    {
        get => _rate.Config;
        set => _rate.Config = value;
    }

    public RateControl Rate => _rate;

    /// <summary>The teams' and users' limits on top of the cap.</summary>
    public LimitStack Limits { get; } = new(config.BurstWindow);

    /// <summary>Every limit with the calls running under it now.</summary>
    public ImmutableArray<LimitUsage> LimitUsages() => Limits.Snapshot(Usage(keptOnly: false), time.GetUtcNow());

    /// <summary>Slots held now.</summary>
    public int Running => _leases.Count;

    /// <summary>Items of registered batches that are neither running nor terminal.</summary>
    public long Queued => _batches.Values.Sum(b => b.Waiting);

    /// <summary>Until when grants are held after a 429 that said the quota is spent.</summary>
    public DateTimeOffset? CooldownUntil => _rate.HeldUntil;

    public long RateLimited => _rate.RateLimited;

    public int BatchCount => _batches.Count;

    /// <summary>The cap in force now (see <see cref="RateControl.EffectiveCap"/>).</summary>
    public int EffectiveCap => _rate.EffectiveCap;

    /// <summary>
    /// Fewest free slots worth a grant: a large pool hands slots out a few at a time, so each batch
    /// claims items in bulk rather than one store round trip per freed slot. At most 1/32 of the cap
    /// stays idle for it (1 below 64 slots, so small pools grant every slot at once).
    /// </summary>
    public int GrantChunk => Math.Clamp(Config.MaxRunning / 32, 1, 16);

    public bool IsIdle => _batches.Count == 0 && _leases.Count == 0;

    public QueueReservation Reserve(string batchId, int itemCount, int priority)
    {
        var existing = _batches.GetValueOrDefault(batchId)?.Waiting ?? 0;
        var queued = Queued - existing;
        if (queued + itemCount > Config.MaxQueued)
        {
            return new QueueReservation(false,
                $"pool '{name}' has {queued} items queued; {itemCount} more would pass its maxQueued of {Config.MaxQueued}");
        }

        // Room is held, but nothing is granted until the batch itself registers (it has started).
        if (!_batches.TryGetValue(batchId, out _))
        {
            _batches[batchId] = NewShare(started: false);
        }

        _batches[batchId].Outstanding = itemCount;
        _batches[batchId].Priority = Math.Clamp(priority, 1, 10);
        return QueueReservation.Granted;
    }

    /// <summary>
    /// Declares a batch that has started, with its items not yet terminal, how long one of its calls
    /// may run (<see cref="BatchOptions.AttemptTimeout"/> when not given) and how many of its calls may
    /// run at once (<see cref="BatchOptions.MaxRunning"/>; <c>null</c>: as many as its share).
    /// </summary>
    public void Register(string batchId, long outstanding, int priority, TimeSpan? attemptTimeout = null, int? maxRunning = null, BatchOwner? owner = null,
        IReadOnlyList<string>? models = null)
    {
        if (!_batches.TryGetValue(batchId, out var share))
        {
            // Slots it already holds may have been adopted from renewals before it registered.
            share = NewShare(started: true);
            share.Running = _leases.Values.Count(h => h.BatchId == batchId);
            _batches[batchId] = share;
        }

        share.Outstanding = outstanding;
        share.Priority = Math.Clamp(priority, 1, 10);
        share.AttemptTimeout = attemptTimeout ?? DefaultAttemptTimeout;
        share.MaxRunning = maxRunning;
        share.Owner = owner;
        share.Models = models;
        share.NotBefore = null;
        share.Started = true;
        share.RejoinBy = null;
    }

    public void SetPaused(string batchId, bool paused)
    {
        if (_batches.TryGetValue(batchId, out var share))
        {
            share.Paused = paused;
        }
    }

    /// <summary>Forgets the batch. Its slots still held stay counted until released, so the cap holds.</summary>
    public void Remove(string batchId) => _batches.Remove(batchId);

    /// <summary>The batches the pool knows, with what each has outstanding: what a later activation starts from.</summary>
    public List<KnownBatch> SaveBatches() =>
        [.. _batches.Select(batch => new KnownBatch(batch.Key, batch.Value.Outstanding, batch.Value.Priority, batch.Value.AttemptTimeout, batch.Value.Owner))];

    /// <summary>
    /// Takes over the batches an earlier activation knew, so their items count against
    /// <see cref="PoolConfig.MaxQueued"/> from the start. Each gets slots only once it registers again (its
    /// grain does every few seconds while it lives), and is forgotten if it has not within <paramref name="rejoinWithin"/>.
    /// </summary>
    public void RestoreBatches(IEnumerable<KnownBatch> saved, TimeSpan rejoinWithin)
    {
        var until = time.GetUtcNow() + rejoinWithin;
        foreach (var batch in saved)
        {
            var share = NewShare(started: false);
            share.Outstanding = batch.Outstanding;
            share.Priority = batch.Priority;
            share.AttemptTimeout = batch.AttemptTimeout;
            share.Owner = batch.Owner;
            share.RejoinBy = until;
            _batches.TryAdd(batch.BatchId, share);
        }
    }

    /// <summary>The slots held now, each with until when it is counted if its holder stops reporting: what a later activation counts from the start.</summary>
    public List<KnownSlot> SaveSlots() =>
        [.. _leases.Select(lease => new KnownSlot(lease.Key, lease.Value.BatchId, lease.Value.ExpiresAt, lease.Value.Hot))];

    /// <summary>
    /// Counts the slots an earlier activation held as it last saved them, each until its own deadline plus
    /// <paramref name="lateBy"/> (how much later than the save that activation may have extended it). A
    /// live holder renews or reports its slot and so takes it over; the slot of a holder that stopped (dead,
    /// or paused with its call still running at the provider) stays counted until its call cannot be running.
    /// </summary>
    public void RestoreSlots(IEnumerable<KnownSlot> saved, TimeSpan lateBy)
    {
        foreach (var slot in saved)
        {
            if (_leases.TryAdd(slot.Token, new Holder(slot.BatchId, slot.CountedUntil + lateBy, ChargedTokens: 0, slot.Hot, Unconfirmed: true))
                && _batches.TryGetValue(slot.BatchId, out var share))
            {
                share.Running++;
            }
        }
    }

    /// <summary>A batch joining now: at the current pass, so it neither waits behind the others nor gets a burst.</summary>
    private BatchShare NewShare(bool started) => new() { Pass = _virtualPass, Started = started, TokensPerCall = _rate.TokensPerCall };

    /// <summary>Frees a slot; <c>false</c> when the token is not held (released twice, or expired).</summary>
    public bool Release(SlotRelease release) => Free(release, byHolder: true);

    /// <summary>
    /// Frees a slot. One its holder gave back is remembered for <see cref="EndedMemory"/>, so that a report of
    /// an earlier call on it that arrives late (<see cref="Kept"/>) does not take it up again.
    /// </summary>
    private bool Free(SlotRelease release, bool byHolder)
    {
        if (!_leases.Remove(release.Token, out var holder))
        {
            return false;
        }

        if (byHolder)
        {
            _ended[release.Token] = time.GetUtcNow();
        }

        if (_batches.TryGetValue(holder.BatchId, out var share))
        {
            share.Running--;
            if (holder.Revoked)
            {
                share.Revoked--;
            }
        }

        CallEnded(release, holder);
        return true;
    }

    /// <summary>
    /// How long a slot its holder gave back is remembered: far longer than a kept call's report can lag
    /// behind the slot's release (the batch reports every 50 ms).
    /// </summary>
    public static readonly TimeSpan EndedMemory = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Counts a call that ended on a hot slot its batch kept for its next item: the slot stays held, its
    /// lease extended, and the next call counts as started. A slot the pool does not hold is adopted (its
    /// batch runs calls on it: it was granted by an activation before a failover, or it expired while its
    /// holder lived), unless its holder gave it back lately and this report came after; returns <c>false</c>
    /// for such a late report, which counts the call but holds nothing.
    /// </summary>
    public bool Kept(SlotRelease release)
    {
        var now = time.GetUtcNow();
        if (!_leases.TryGetValue(release.Token, out var holder))
        {
            holder = new Holder(release.BatchId, now, ChargedTokens: 0, Hot: true);
            if (_ended.ContainsKey(release.Token))
            {
                CallEnded(release, holder);
                return false;
            }

            if (_batches.TryGetValue(release.BatchId, out var adopter))
            {
                adopter.Running++;
            }
        }

        CallEnded(release, holder);

        // The next call on the slot is the batch's turn, as a grant would be.
        if (_batches.TryGetValue(holder.BatchId, out var next))
        {
            _virtualPass = next.Pass;
            next.Pass += 1.0 / next.Priority;
        }

        _rate.TryStart(0);
        _leases[release.Token] = holder with { ExpiresAt = CountedUntil(holder.BatchId, now + Config.LeaseDuration), ChargedTokens = 0, Unconfirmed = false };
        return true;
    }

    private void CallEnded(SlotRelease release, Holder holder)
    {
        if (_batches.TryGetValue(holder.BatchId, out var share))
        {
            if (release.ItemTerminal)
            {
                share.Outstanding--;
            }

            if (release.EstimatedTokens > 0)
            {
                share.TokensPerCall = share.Estimates.Add(share.TokensPerCall, release.EstimatedTokens);
            }
        }

        _rate.Ended(release, holder.ChargedTokens);
        if (!Limits.IsEmpty)
        {
            // As the pool's budget: a 429 used no tokens, another call its reported usage, else its estimate, else its charge.
            var used = release.RateLimitedFor is not null ? 0 : release.Tokens > 0 ? release.Tokens : release.EstimatedTokens > 0 ? release.EstimatedTokens : holder.ChargedTokens;
            Limits.Refund(share?.Owner, ModelsOf(share), holder.ChargedTokens, used, unused: false, time.GetUtcNow());
        }
    }

    /// <summary>
    /// The hot slots the pool wants back now, by batch; each is marked revoked (asked once) and returns when
    /// its call ends. All of them while the pool is paused or held or a budget paces it, or for a batch that
    /// is paused or gone; else the slots over the cap in force, then those a batch holds over its fair share
    /// while another batch waits for a slot.
    /// </summary>
    public IReadOnlyList<(string BatchId, List<long> Tokens)> Revocations(bool poolPaused)
    {
        // A slot restored after a failover is left alone until its holder speaks: it may be paused.
        var revocable = _leases.Where(lease => lease.Value is { Hot: true, Revoked: false, Unconfirmed: false }).Select(lease => lease.Key).ToList();
        if (revocable.Count == 0)
        {
            return [];
        }

        var revoked = new Dictionary<string, List<long>>(StringComparer.Ordinal);
        var all = poolPaused || _rate.Paces || _rate.HeldUntil is not null;
        RevokeWhere(revocable, holder => all || _batches.GetValueOrDefault(holder.BatchId) is not { Paused: false } share || Limits.Paces(share.Owner, ModelsOf(share)),
            int.MaxValue, revoked);

        // A team's or a user's limit lowered below what its batches hold: the excess goes.
        var kept = Limits.IsEmpty ? null : Usage(keptOnly: true);
        if (kept is not null)
        {
            RevokeWhere(revocable, OverLimit, int.MaxValue, revoked);
        }

        // Slots that stay held once the revoked ones are back; over the cap in force, the excess goes.
        var cap = EffectiveCap;
        var keeping = _leases.Values.Count(holder => !holder.Revoked);
        var wanted = Math.Max(0, keeping - cap);

        // With no slot free, batches under their fair share (by priority, among the batches holding slots
        // or with items ready) get what the batches over theirs hold beyond it.
        var now = time.GetUtcNow();
        // Between teams first (by weight), then between a team's batches (by priority).
        var counted = _batches.Where(b => Wants(b.Value, now) || b.Value.Running > b.Value.Revoked).ToList();
        var teams = counted.GroupBy(b => Team(b.Value), StringComparer.Ordinal)
            .ToDictionary(team => team.Key, team => (Weight: Limits.Weight(team.Key), Priorities: team.Sum(b => b.Value.Priority)), StringComparer.Ordinal);
        var weights = teams.Values.Sum(team => team.Weight);
        var excess = new Dictionary<string, int>(StringComparer.Ordinal);
        var deficit = 0;
        foreach (var (batchId, share) in counted)
        {
            var team = teams[Team(share)];
            var teamCap = teams.Count == 1 ? cap : (int)(cap * team.Weight / weights);
            var target = teamCap * share.Priority / team.Priorities;
            var keeps = share.Running - share.Revoked;
            if (keeps > target)
            {
                excess[batchId] = keeps - target;
            }
            else if (Wants(share, now))
            {
                var room = kept is null ? share.Room : Math.Min(share.Room, Math.Max(0, Limits.Room(share.Owner, ModelsOf(share), kept)));
                deficit += (int)Math.Min(target - keeps, room);
            }
        }

        if (keeping >= cap)
        {
            wanted = Math.Max(wanted, Math.Min(deficit, excess.Values.Sum()));
        }

        // From the batches over their share first; over the cap with none (one batch alone), any hot slot.
        wanted -= RevokeWhere(revocable, OverShare, wanted, revoked);
        RevokeWhere(revocable, _ => true, wanted, revoked);
        return [.. revoked.Select(b => (b.Key, b.Value))];

        bool OverLimit(Holder holder)
        {
            if (_batches.GetValueOrDefault(holder.BatchId) is not { } share || Limits.Room(share.Owner, ModelsOf(share), kept!) >= 0)
            {
                return false;
            }

            Limits.Count(kept!, share.Owner, ModelsOf(share), -1);
            return true;
        }

        bool OverShare(Holder holder)
        {
            if (excess.GetValueOrDefault(holder.BatchId) <= 0)
            {
                return false;
            }

            excess[holder.BatchId]--;
            return true;
        }
    }

    /// <summary>Revokes up to <paramref name="limit"/> of the <paramref name="candidates"/> not yet revoked that <paramref name="take"/> picks; returns how many.</summary>
    private int RevokeWhere(List<long> candidates, Func<Holder, bool> take, int limit, Dictionary<string, List<long>> revoked)
    {
        var taken = 0;
        foreach (var token in candidates)
        {
            if (taken >= limit)
            {
                break;
            }

            var holder = _leases[token];
            if (!holder.Revoked && take(holder))
            {
                Revoke(token, holder, revoked);
                taken++;
            }
        }

        return taken;
    }

    private void Revoke(long token, Holder holder, Dictionary<string, List<long>> revoked)
    {
        _leases[token] = holder with { Revoked = true };
        if (_batches.TryGetValue(holder.BatchId, out var share))
        {
            share.Revoked++;
        }

        if (!revoked.TryGetValue(holder.BatchId, out var tokens))
        {
            revoked[holder.BatchId] = tokens = [];
        }

        tokens.Add(token);
    }

    private static bool Wants(BatchShare share, DateTimeOffset now) =>
        share.Started && !share.Paused && share.Room > 0 && !(share.NotBefore > now);

    /// <summary>
    /// Takes back slots a batch could not use; the batch gets no more before <paramref name="notBefore"/>
    /// (when its next item is due), or at once when <c>null</c>.
    /// </summary>
    public void ReturnUnused(string batchId, IEnumerable<long> tokens, DateTimeOffset? notBefore)
    {
        var share = _batches.GetValueOrDefault(batchId);
        foreach (var token in tokens)
        {
            if (!_leases.Remove(token, out var holder))
            {
                continue;
            }

            _ended[token] = time.GetUtcNow();
            _rate.Unused(holder.ChargedTokens);
            var owner = _batches.GetValueOrDefault(holder.BatchId);
            Limits.Refund(owner?.Owner, ModelsOf(owner), holder.ChargedTokens, used: 0, unused: true, time.GetUtcNow());
            if (share is not null)
            {
                share.Running--;
                if (holder.Revoked)
                {
                    share.Revoked--;
                }
            }
        }

        if (share is not null)
        {
            share.NotBefore = notBefore;
        }
    }

    /// <summary>
    /// Until when the pool grants nothing: after a failover it cannot know every slot in use until
    /// each live holder has renewed its lease with it. <c>null</c> when not recovering.
    /// </summary>
    public DateTimeOffset? RecoveringUntil => _recoveringUntil > time.GetUtcNow() ? _recoveringUntil : null;

    /// <summary>Holds every grant for <paramref name="window"/>, while the holders of older leases renew them here.</summary>
    public void BeginRecovery(TimeSpan window) => _recoveringUntil = time.GetUtcNow() + window;

    /// <summary>Extends a held lease, or adopts one this pool does not know; returns <c>true</c> when adopted.</summary>
    public bool Renew(LeaseRenewal renewal)
    {
        if (_leases.TryGetValue(renewal.Token, out var holder))
        {
            _leases[renewal.Token] = holder with { ExpiresAt = CountedUntil(holder.BatchId, renewal.ExpiresAt), Unconfirmed = false };
            return false;
        }

        // What it was charged died with the activation that granted it; nothing is given back for it. It
        // may be a hot slot (nothing says otherwise), so it can be revoked.
        _leases[renewal.Token] = new Holder(renewal.BatchId, CountedUntil(renewal.BatchId, renewal.ExpiresAt), ChargedTokens: 0, Hot: true);
        if (_batches.TryGetValue(renewal.BatchId, out var share))
        {
            share.Running++;
        }

        return true;
    }


    /// <summary>
    /// Frees slots whose holders stopped reporting, once their calls cannot be running any more; returns how many.
    /// </summary>
    public int ExpireLeases()
    {
        var now = time.GetUtcNow();
        var expired = _leases.Where(l => l.Value.ExpiresAt < now).Select(l => l.Key).ToList();
        foreach (var token in expired)
        {
            Free(new SlotRelease(_leases[token].BatchId, token, ItemTerminal: false, RateLimitedFor: null), byHolder: false);
        }

        foreach (var (token, at) in _ended.Where(ended => now - ended.Value > EndedMemory).ToList())
        {
            _ended.Remove(token, out _);
        }

        foreach (var gone in _batches.Where(batch => batch.Value.RejoinBy < now && batch.Value.Running == 0).Select(batch => batch.Key).ToList())
        {
            _batches.Remove(gone);
        }

        return expired.Count;
    }

    /// <summary>Hands out every slot free under the effective cap, to the waiting batches by fair share.</summary>
    public IReadOnlyList<(string BatchId, List<ItemLease> Leases)> Grant()
    {
        var now = time.GetUtcNow();
        var cap = EffectiveCap;
        var free = Math.Min(cap - Running, _rate.RequestsAffordable);
        if (free <= 0 || free < Math.Min(GrantChunk, Math.Min(cap, _rate.RequestBurst)) || _batches.Count == 0 || RecoveringUntil is not null)
        {
            MarkWaiting(now);
            return [];
        }

        var grants = new Dictionary<string, List<ItemLease>>(StringComparer.Ordinal);
        int? estimateTokens = _rate.CountsTokens || Limits.CountsTokens ? Config.DefaultMaxTokens : null;
        var usage = Limits.IsEmpty ? null : Usage(keptOnly: false);
        HashSet<string> outOfBudget = [];
        while (free > 0 && NextBatch(now, usage, outOfBudget) is { } batchId)
        {
            var share = _batches[batchId];
            var charge = estimateTokens is null ? 0 : share.TokensPerCall;
            if (!_rate.TryStart(charge))
            {
                break;
            }

            if (!Limits.TryStart(share.Owner, ModelsOf(share), charge, now))
            {
                // Its team's or user's budget is spent for now; the other batches go on.
                _rate.Unused(charge);
                outOfBudget.Add(batchId);
                continue;
            }

            var hot = !_rate.Paces && !Limits.Paces(share.Owner, ModelsOf(share));
            var lease = new ItemLease(name, (epoch << 32) | ++_sequence, now + Config.LeaseDuration, Config.LeaseDuration, share.WaitingSince, estimateTokens, hot);
            share.WaitingSince = null;
            _leases[lease.Token] = new Holder(batchId, CountedUntil(batchId, lease.ExpiresAt), charge, hot);
            share.Running++;
            _virtualPass = share.Pass;
            share.Pass += 1.0 / share.Priority;
            var team = Team(share);
            _virtualTeamPass = TeamPass(team);
            _teamPasses[team] = _virtualTeamPass + (1.0 / Limits.Weight(share.Owner?.Team));
            if (usage is not null)
            {
                Limits.Count(usage, share.Owner, ModelsOf(share), 1);
            }

            free--;
            if (!grants.TryGetValue(batchId, out var list))
            {
                grants[batchId] = list = [];
            }

            list.Add(lease);
        }

        MarkWaiting(now);
        return grants.Select(g => (g.Key, g.Value)).ToList();
    }

    /// <summary>
    /// Batches with items ready that this grant left without a slot start waiting now (unless they
    /// already were); their next lease carries the wait, for the slot-wait metric and span.
    /// </summary>
    private void MarkWaiting(DateTimeOffset now)
    {
        foreach (var share in _batches.Values)
        {
            if (Wants(share, now))
            {
                share.WaitingSince ??= now;
            }
            else
            {
                share.WaitingSince = null;
            }
        }
    }

    /// <summary>Calls started in the last minute.</summary>
    public int RequestsLastMinute => _rate.RequestsLastMinute;

    /// <summary>Tokens reported by calls that ended in the last minute.</summary>
    public long TokensLastMinute => _rate.TokensLastMinute;

    /// <summary>
    /// The batch the next slot goes to: of the team with the lowest pass, the batch with the lowest pass; between
    /// equals, the batch running fewer calls (a batch that just joined). A batch whose team or user is at a limit
    /// (<paramref name="usage"/>) waits, without holding up the others.
    /// </summary>
    private string? NextBatch(DateTimeOffset now, LimitStack.Usage? usage, HashSet<string> outOfBudget)
    {
        string? best = null;
        (double Team, double Batch, int Running) lowest = (double.MaxValue, double.MaxValue, int.MaxValue);
        foreach (var (batchId, share) in _batches)
        {
            if (!Wants(share, now) || (usage is not null && Limits.Room(share.Owner, ModelsOf(share), usage) <= 0) || outOfBudget.Contains(batchId))
            {
                continue;
            }

            var rank = (TeamPass(Team(share)), share.Pass, share.Running);
            if (rank.CompareTo(lowest) < 0)
            {
                best = batchId;
                lowest = rank;
            }
        }

        return best;
    }

    /// <summary>A team's pass: one that waited long starts no more than one step behind the current pass (no burst to catch up).</summary>
    private double TeamPass(string team) =>
        _teamPasses.TryGetValue(team, out var pass) ? Math.Max(pass, _virtualTeamPass - 1) : _virtualTeamPass;

    private static string Team(BatchShare share) => share.Owner?.Team ?? NoTeam;

    /// <summary>The model a batch's calls count under for the limits: the one all its lines name, else the pool's (its default, in a pool of several).</summary>
    private IReadOnlyList<string> ModelsOf(BatchShare? share) => share?.Models ?? [Config.Model.Model];

    /// <summary>The calls each limit counts: the slots the batches hold (<paramref name="keptOnly"/>: less those asked back).</summary>
    private LimitStack.Usage Usage(bool keptOnly)
    {
        var usage = new LimitStack.Usage();
        foreach (var share in _batches.Values)
        {
            Limits.Count(usage, share.Owner, ModelsOf(share), keptOnly ? share.Running - share.Revoked : share.Running);
        }

        return usage;
    }

    private sealed class BatchShare
    {
        public long Outstanding { get; set; }

        public int Running { get; set; }

        /// <summary>Hot slots of <see cref="Running"/> the pool has asked back.</summary>
        public int Revoked { get; set; }

        public int Priority { get; set; } = 1;

        public double Pass { get; set; }

        public bool Paused { get; set; }

        public bool Started { get; set; } = true;

        public DateTimeOffset? NotBefore { get; set; }

        /// <summary>How long one of the batch's calls may run (<see cref="BatchOptions.AttemptTimeout"/>).</summary>
        public TimeSpan AttemptTimeout { get; set; } = DefaultAttemptTimeout;

        /// <summary>For a batch taken over from an earlier activation: forgotten unless it registers by then.</summary>
        public DateTimeOffset? RejoinBy { get; set; }

        /// <summary>Since when the batch has had items ready and no slot for them; <c>null</c> when it is not waiting.</summary>
        public DateTimeOffset? WaitingSince { get; set; }

        /// <summary>What a grant to this batch is charged against a token budget: the running mean of its calls' estimates.</summary>
        public double TokensPerCall { get; set; }

        public RunningMean Estimates { get; } = new();

        /// <summary>How many of the batch's calls may run at once (<see cref="BatchOptions.MaxRunning"/>); <c>null</c>: no cap of its own.</summary>
        public int? MaxRunning { get; set; }

        /// <summary>Whose limits the batch's calls count against, and which team's share they take.</summary>
        public BatchOwner? Owner { get; set; }

        /// <summary>The models the batch's lines name (<see cref="BatchOptions.CountedModels"/>), whose model limits count each of its calls.</summary>
        public IReadOnlyList<string>? Models { get; set; }

        public long Waiting => Math.Max(0, Outstanding - Running);

        /// <summary>Slots the batch could use now: its items waiting, within its own cap.</summary>
        public long Room => MaxRunning is { } cap ? Math.Min(Waiting, Math.Max(0, cap - Running)) : Waiting;
    }

    /// <summary>
    /// Until when a slot whose lease runs to <paramref name="leaseExpiresAt"/> is counted if its holder stops
    /// reporting: a lease only says the holder is alive, and a holder that stops (dead, or paused by a GC,
    /// a frozen VM, SIGSTOP) may have a call running at the provider until that call's attempt timeout. A
    /// live holder that cannot renew aborts its calls by its own clock (<c>LeaseRenewer</c>); a paused one
    /// cannot, so the cap holds, as the provider sees it, only if the slot stays counted that long.
    /// </summary>
    private DateTimeOffset CountedUntil(string batchId, DateTimeOffset leaseExpiresAt) =>
        leaseExpiresAt + (_batches.TryGetValue(batchId, out var share) ? share.AttemptTimeout : LongestAttemptTimeout);

    /// <summary>For a slot of a batch not registered (yet): the longest any batch of the pool may take.</summary>
    private TimeSpan LongestAttemptTimeout =>
        _batches.Values.Select(share => share.AttemptTimeout).DefaultIfEmpty(DefaultAttemptTimeout).Max();

    private static readonly TimeSpan DefaultAttemptTimeout = new BatchOptions().AttemptTimeout;

    /// <summary>
    /// A granted slot; <see cref="ExpiresAt"/> is when it is freed if its holder stops reporting (see
    /// <see cref="CountedUntil"/>). <see cref="Unconfirmed"/>: restored from an earlier activation's save, not
    /// yet renewed or reported by its holder.
    /// </summary>
    private readonly record struct Holder(string BatchId, DateTimeOffset ExpiresAt, double ChargedTokens, bool Hot = false, bool Revoked = false, bool Unconfirmed = false);
}

/// <summary>A batch a pool knows, as its state saves it: what it has outstanding, its priority and how long one of its calls may run.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.KnownBatch")]
public sealed record KnownBatch(
    [property: Id(0)] string BatchId,
    [property: Id(1)] long Outstanding,
    [property: Id(2)] int Priority,
    [property: Id(3)] TimeSpan AttemptTimeout,
    [property: Id(4)] BatchOwner? Owner = null);

/// <summary>A slot a pool held, as its state saves it: its token, its batch, until when it is counted if its holder stops reporting, and whether it is hot.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.KnownSlot")]
public sealed record KnownSlot(
    [property: Id(0)] long Token,
    [property: Id(1)] string BatchId,
    [property: Id(2)] DateTimeOffset CountedUntil,
    [property: Id(3)] bool Hot);
