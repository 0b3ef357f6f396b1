namespace Nightshift.Pools;

/// <summary>What a pool's rate control keeps across activations, so a failover neither forgets a wait nor starts with a full budget.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.RateControlState")]
public sealed record RateControlState(
    [property: Id(0)] double AdaptiveCap,
    [property: Id(1)] DateTimeOffset? HeldUntil,
    [property: Id(2)] DateTimeOffset? SlowStartFrom,
    [property: Id(3)] long? AdvertisedRequests,
    [property: Id(4)] long? AdvertisedTokens,
    [property: Id(5)] double TokensPerCall,
    [property: Id(6)] DateTimeOffset? WindowEnd = null,
    [property: Id(7)] int RefusedWindows = 0,
    [property: Id(8)] bool SucceededInWindow = false,
    [property: Id(9)] MinuteCounts? StartedLastMinute = null,
    [property: Id(10)] MinuteCounts? UsedLastMinute = null);

/// <summary>
/// A pool's rate control, free of Orleans so it can be tested with a fake clock. Not thread-safe; the
/// pool grain's turns serialize every call.
/// </summary>
/// <remarks>
/// <para>
/// The adaptive cap is AIMD: a 429 multiplies it by <see cref="PoolConfig.CapDecrease"/>, at most once per
/// window (the 429's wait, at least <see cref="PoolConfig.DecreaseWindow"/>), so a burst of 429s from one
/// overload counts once; every successful call adds <see cref="PoolConfig.CapIncreasePerSuccess"/> back, up
/// to <see cref="PoolConfig.MaxRunning"/>. When the provider says its quota is spent (a remaining figure at
/// zero, or no rate-limit headers at all), new grants are also held for the wait, pool-wide (only until
/// the spent figure's reset, when the provider says it refills sooner), unless a configured budget
/// already paces that figure within the provider's advertised limit (its bucket, cut to the provider's
/// remaining, then holds the grants); when its headers still show room (an overloaded server, another
/// client's burst), they are not. Only real
/// exhaustion (<see cref="PoolConfig.ExhaustedAfterWindows"/> windows of 429s in a row without a success,
/// or a wait over <see cref="PoolConfig.ExhaustedWait"/>) brings the full cooldown and slow start.
/// </para>
/// <para>
/// Budgets (<c>rpm</c>, <c>tpm</c>) are token buckets checked before a slot is granted, holding
/// <see cref="PoolConfig.BurstWindow"/>'s worth. A call is charged its estimated tokens when granted
/// and reconciled with the usage the provider reports when it ends; a 429 gives its tokens back (the
/// provider did not run it), a call that ended without usage keeps its estimate charged. A budget the
/// pool does not configure is learned from the provider's <c>x-ratelimit-limit-*</c> headers
/// (<see cref="PoolConfig.LearnedLimitShare"/> of it), and what the provider says remains caps the
/// bucket, so grants slow down before a 429 when another client shares the quota.
/// </para>
/// </remarks>
internal sealed class RateControl
{
    private readonly TimeProvider _time;
    private readonly RunningMean _estimates = new();
    private readonly Budget _requests = new();
    private readonly Budget _tokens = new();
    private readonly MinuteCounter _started = new();
    private readonly MinuteCounter _used = new();
    private PoolConfig _config;
    private double _cap;
    private DateTimeOffset? _heldUntil;
    private DateTimeOffset? _slowStartFrom;
    private DateTimeOffset? _windowEnd;
    private bool _succeededInWindow;
    private int _refusedWindows;

    public RateControl(PoolConfig config, TimeProvider time)
    {
        _time = time;
        _config = config;
        _cap = config.MaxRunning;
        TokensPerCall = config.DefaultMaxTokens;
        Rebuild(startEmpty: false);
    }

    public PoolConfig Config
    {
        get => _config;
        set
        {
            _cap = _cap >= _config.MaxRunning ? value.MaxRunning : Math.Min(_cap, value.MaxRunning);
            _config = value;
            Rebuild(startEmpty: false);
        }
    }

    /// <summary>The adaptive cap, before the hold and the slow start are applied.</summary>
    public double AdaptiveCap => _cap;

    /// <summary>Until when nothing is granted: the provider's wait after it said its quota is spent. <c>null</c> when not held.</summary>
    public DateTimeOffset? HeldUntil => _heldUntil > _time.GetUtcNow() ? _heldUntil : null;

    public long RateLimited { get; private set; }

    /// <summary>Whether calls are charged tokens (the pool has a token budget, configured or learned).</summary>
    public bool CountsTokens => _tokens.Bucket is not null;

    /// <summary>Whether every call start must pass a bucket (the pool has a request or token budget, configured or learned).</summary>
    public bool Paces => _requests.Bucket is not null || _tokens.Bucket is not null;

    /// <summary>The pool's running mean of the calls' token estimates; new batches are charged this until their own calls report.</summary>
    public double TokensPerCall { get; private set; }

    /// <summary>Calls started in the last minute.</summary>
    public int RequestsLastMinute => (int)_started.Total(_time.GetUtcNow());

    /// <summary>Tokens reported by calls that ended in the last minute.</summary>
    public long TokensLastMinute => _used.Total(_time.GetUtcNow());

    /// <summary>The cap in force now: zero while held, ramping linearly over the slow start after an exhaustion, else the adaptive cap.</summary>
    public int EffectiveCap
    {
        get
        {
            var now = _time.GetUtcNow();
            if (_heldUntil > now)
            {
                return 0;
            }

            var cap = Math.Max(1, (int)_cap);
            if (_slowStartFrom is { } from && now - from < _config.SlowStart)
            {
                cap = Math.Min(cap, Math.Max(1, (int)(_config.MaxRunning * ((now - from) / _config.SlowStart))));
            }

            return cap;
        }
    }

    /// <summary>Calls the request budget lets start now (<see cref="int.MaxValue"/> without one).</summary>
    public int RequestsAffordable => _requests.Bucket?.Fits(1, _time.GetUtcNow()) ?? int.MaxValue;

    /// <summary>Most calls the request budget ever lets start at once (<see cref="int.MaxValue"/> without one).</summary>
    public int RequestBurst => _requests.Bucket is { } bucket ? (int)bucket.Capacity : int.MaxValue;

    /// <summary>Charges one call estimated at <paramref name="tokens"/>; <c>false</c> (nothing charged) when a budget has no room for it.</summary>
    public bool TryStart(double tokens)
    {
        var now = _time.GetUtcNow();
        if (_requests.Bucket?.Fits(1, now) == 0 || (_tokens.Bucket is { } budget && budget.Fits(tokens, now) == 0))
        {
            return false;
        }

        _requests.Bucket?.Take(1, now);
        _tokens.Bucket?.Take(tokens, now);
        _started.Add(1, now);
        return true;
    }

    /// <summary>Gives back what a granted slot that was never used to call was charged.</summary>
    public void Unused(double charged)
    {
        var now = _time.GetUtcNow();
        _requests.Bucket?.Adjust(1, now);
        _tokens.Bucket?.Adjust(charged, now);
        _started.Add(-1, now);
    }

    /// <summary>Takes in what an ended call says: its outcome for the adaptive cap, its tokens against the estimate it was <paramref name="charged"/>, the provider's headers.</summary>
    public void Ended(SlotRelease release, double charged)
    {
        var now = _time.GetUtcNow();
        _used.Add(release.Tokens, now);
        if (release.Limits is { } advertised && (_requests.Advertise(advertised.LimitRequests) | _tokens.Advertise(advertised.LimitTokens)))
        {
            Rebuild(startEmpty: false);
        }

        if (release.EstimatedTokens > 0)
        {
            TokensPerCall = _estimates.Add(TokensPerCall, release.EstimatedTokens);
        }

        if (release.RateLimitedFor is { } wait)
        {
            // The provider refused the call before running it: its tokens were not used.
            _tokens.Bucket?.Adjust(charged, now);
            RateLimitedBy(wait, release.Limits, now);
        }
        else
        {
            var used = release.Tokens > 0 ? release.Tokens : release.EstimatedTokens > 0 ? release.EstimatedTokens : charged;
            _tokens.Bucket?.Adjust(charged - used, now);
            if (release.Succeeded)
            {
                _cap = Math.Min(_config.MaxRunning, _cap + _config.CapIncreasePerSuccess);
                _succeededInWindow = true;
            }
        }

        // Last, so no refund above lifts the bucket over what the provider says remains.
        if (release.Limits is { } limits)
        {
            _requests.Remaining(limits.RemainingRequests, now);
            _tokens.Remaining(limits.RemainingTokens, now);
        }
    }

    public RateControlState Save() =>
        new(_cap, _heldUntil, _slowStartFrom, _requests.Advertised, _tokens.Advertised, TokensPerCall, _windowEnd, _refusedWindows, _succeededInWindow,
            _started.Save(), _used.Save());

    /// <summary>
    /// Takes over what an earlier activation saved, the last minute's requests and tokens included. The
    /// buckets start empty: that activation may have spent them just before it went, and they refill at
    /// the budget's pace from here.
    /// </summary>
    public void Restore(RateControlState saved)
    {
        _cap = Math.Clamp(saved.AdaptiveCap, 1, _config.MaxRunning);
        _heldUntil = saved.HeldUntil;
        _slowStartFrom = saved.SlowStartFrom;
        _requests.Advertised = saved.AdvertisedRequests;
        _tokens.Advertised = saved.AdvertisedTokens;
        TokensPerCall = saved.TokensPerCall > 0 ? saved.TokensPerCall : TokensPerCall;
        _windowEnd = saved.WindowEnd;
        _refusedWindows = saved.RefusedWindows;
        _succeededInWindow = saved.SucceededInWindow;
        if (saved.StartedLastMinute is { } started)
        {
            _started.Restore(started);
        }

        if (saved.UsedLastMinute is { } used)
        {
            _used.Restore(used);
        }

        Rebuild(startEmpty: true);
    }

    public RateControlSnapshot Snapshot()
    {
        var now = _time.GetUtcNow();
        var slowStartUntil = _slowStartFrom + _config.SlowStart;
        return new RateControlSnapshot(_cap, HeldUntil, slowStartUntil > now ? slowStartUntil : null,
            _requests.Snapshot(_config.Rpm, now), _tokens.Snapshot(_config.Tpm, now), TokensPerCall,
            _heldUntil > now ? (_heldUntil.Value - now).TotalSeconds : 0);
    }

    private void RateLimitedBy(TimeSpan wait, ProviderRateLimits? limits, DateTimeOffset now)
    {
        RateLimited++;
        var window = wait > TimeSpan.Zero ? wait : _config.DefaultCooldown;
        if (!(_windowEnd > now))
        {
            // A new window: one decrease for every 429 of this overload.
            _refusedWindows = _succeededInWindow || _windowEnd is null ? 1 : _refusedWindows + 1;
            _succeededInWindow = false;
            _cap = Math.Max(1, _cap * _config.CapDecrease);
            _windowEnd = now + (window > _config.DecreaseWindow ? window : _config.DecreaseWindow);
        }

        if (window > _config.ExhaustedWait || _refusedWindows >= _config.ExhaustedAfterWindows)
        {
            Hold(now + window);
            _slowStartFrom = now + window;
            _refusedWindows = 0;
        }
        else if (limits is null || (limits.QuotaSpent && !AtTheEdgeOfConfiguredBudgets(limits)))
        {
            // The item waits the provider's whole wait; the pool only until the spent quota is back,
            // when the provider's reset says that comes sooner (a provider at the edge of its budget
            // refills in milliseconds, and a second's hold there is a second's work lost).
            Hold(now + (limits?.SpentFor is { } back && back < window ? back : window));
        }
    }

    /// <summary>
    /// Whether every figure the provider says is spent has a configured budget at or below the
    /// provider's advertised limit: the operator's pace is then within what the provider allows, the
    /// spent quota is the edge of its window, and the bucket, cut to what remains, holds the grants for
    /// just as long as the budget needs to refill. A full hold there would only lose work.
    /// </summary>
    private bool AtTheEdgeOfConfiguredBudgets(ProviderRateLimits limits) =>
        (limits.RemainingRequests <= 0 || limits.RemainingTokens <= 0)
        && _requests.PacesWithin(limits.RemainingRequests) && _tokens.PacesWithin(limits.RemainingTokens);

    private void Hold(DateTimeOffset until)
    {
        if (!(_heldUntil >= until))
        {
            _heldUntil = until;
        }
    }

    private void Rebuild(bool startEmpty)
    {
        var now = _time.GetUtcNow();
        _requests.Rebuild(_config.Rpm, _config, startEmpty, now);
        _tokens.Rebuild(_config.Tpm, _config, startEmpty, now);
    }

    /// <summary>One budget (requests or tokens per minute): configured, or learned from the provider, and its bucket.</summary>
    private sealed class Budget
    {
        public long? Advertised { get; set; }

        public TokenBucket? Bucket { get; private set; }

        private long? Configured { get; set; }

        private long? ProviderRemaining { get; set; }

        /// <summary>Records the provider's advertised limit; <c>true</c> when it changed.</summary>
        public bool Advertise(long? limit)
        {
            if (limit is not > 0 || limit == Advertised)
            {
                return false;
            }

            Advertised = limit;
            return true;
        }

        /// <summary>A figure not spent, or spent under a configured budget at or below the provider's advertised limit.</summary>
        public bool PacesWithin(long? remaining) =>
            remaining is not <= 0 || (Configured is { } configured && Advertised is { } advertised && configured <= advertised);

        public void Remaining(long? remaining, DateTimeOffset now)
        {
            if (remaining is { } left)
            {
                ProviderRemaining = left;
                Bucket?.LimitTo(left, now);
            }
        }

        public void Rebuild(long? configured, PoolConfig config, bool startEmpty, DateTimeOffset now)
        {
            Configured = configured;
            if (PerMinute(configured, config) is not { } perMinute)
            {
                Bucket = null;
                return;
            }

            var perSecond = perMinute / 60.0;
            var capacity = Math.Max(1, perSecond * config.BurstWindow.TotalSeconds);
            if (Bucket is null || startEmpty)
            {
                Bucket = new TokenBucket(perSecond, capacity, startEmpty ? 0 : capacity, now);
            }
            else
            {
                Bucket.SetRate(perSecond, capacity, now);
            }
        }

        public BudgetSnapshot? Snapshot(long? configured, DateTimeOffset now) => Bucket is { } bucket
            ? new BudgetSnapshot((long)Math.Round(bucket.PerSecond * 60), configured is null ? LimitSource.Learned : LimitSource.Configured,
                Advertised, bucket.Level(now), bucket.Capacity, ProviderRemaining)
            : null;

        private long? PerMinute(long? configured, PoolConfig config) =>
            configured ?? (Advertised is { } advertised ? Math.Max(1, (long)Math.Round(advertised * config.LearnedLimitShare)) : null);
    }
}

/// <summary>
/// A mean of token estimates that follows the latest calls: the plain mean of the first few (so the
/// first call's estimate replaces the pool's default at once), then an exponential moving average.
/// </summary>
internal sealed class RunningMean
{
    private const double Weight = 0.2;
    private int _samples;

    public double Add(double mean, double sample) => mean + ((sample - mean) * Math.Max(Weight, 1.0 / ++_samples));
}
