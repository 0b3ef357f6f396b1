namespace Nightshift.MockModel;

/// <summary>
/// A token bucket that holds <see cref="Capacity"/>, starts full and refills continuously at
/// <see cref="PerSecond"/>. Not thread-safe: <see cref="RateLimits"/> serialises every use.
/// </summary>
internal sealed class TokenBucket
{
    // Refills add fractions of a second's rate; without this slack, 0.2 s at 5/s could leave 0.999… and
    // refuse a request that is due.
    private const double Slack = 1e-9;

    private readonly TimeProvider _time;
    private long _refilledAt;

    public TokenBucket(double perSecond, double burstSeconds, TimeProvider time)
    {
        _time = time;
        PerSecond = perSecond;
        Capacity = perSecond * burstSeconds;
        Level = Capacity;
        _refilledAt = time.GetTimestamp();
    }

    public double PerSecond { get; }

    public double Capacity { get; }

    public double Level { get; private set; }

    /// <summary>The whole tokens left, as the <c>x-ratelimit-remaining-*</c> headers report them.</summary>
    public long Remaining => (long)Math.Floor(Level + Slack);

    /// <summary>How long until the bucket is full again.</summary>
    public TimeSpan UntilFull => TimeSpan.FromSeconds((Capacity - Level) / PerSecond);

    /// <summary>Adds what flowed in since the last refill.</summary>
    public void Refill()
    {
        var now = _time.GetTimestamp();
        Level = Math.Min(Capacity, Level + (PerSecond * _time.GetElapsedTime(_refilledAt, now).TotalSeconds));
        _refilledAt = now;
    }

    public bool Holds(double cost) => Level + Slack >= Needed(cost);

    public void Take(double cost) => Level = Math.Max(0, Level - Needed(cost));

    /// <summary>How long until <see cref="Holds"/> would be true for <paramref name="cost"/>.</summary>
    public TimeSpan UntilHolds(double cost) => TimeSpan.FromSeconds(Math.Max(0, Needed(cost) - Level) / PerSecond);

    // A cost above the capacity could never be admitted; it takes a full bucket instead, so an
    // oversized prompt is slowed down rather than refused forever.
    private double Needed(double cost) => Math.Min(cost, Capacity);
}
