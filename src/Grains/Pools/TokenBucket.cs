namespace Nightshift.Pools;

/// <summary>
/// A budget that refills smoothly at <see cref="PerSecond"/> up to <see cref="Capacity"/>. Takes may
/// drive it below zero (a charge reconciled upwards after the call), which then delays what follows.
/// Not thread-safe; the pool grain's turns serialize every call.
/// </summary>
internal sealed class TokenBucket(double perSecond, double capacity, double level, DateTimeOffset now)
{
    private double _level = Math.Min(level, capacity);
    private DateTimeOffset _refilledAt = now;

    public double PerSecond { get; private set; } = perSecond;

    public double Capacity { get; private set; } = capacity;

    public double Level(DateTimeOffset now)
    {
        Refill(now);
        return _level;
    }

    /// <summary>
    /// How many takes of <paramref name="each"/> fit now. A take larger than the whole bucket fits once
    /// the bucket is full, so no call is too big to ever start.
    /// </summary>
    public int Fits(double each, DateTimeOffset now)
    {
        Refill(now);
        if (each <= 0)
        {
            return int.MaxValue;
        }

        if (each > Capacity)
        {
            return _level >= Capacity ? 1 : 0;
        }

        return _level < each ? 0 : (int)Math.Min(int.MaxValue, Math.Floor(_level / each));
    }

    public void Take(double amount, DateTimeOffset now)
    {
        Refill(now);
        _level -= amount;
    }

    /// <summary>Gives back (positive) or charges (negative) the difference between an estimate and what was used.</summary>
    public void Adjust(double amount, DateTimeOffset now)
    {
        Refill(now);
        _level = Math.Min(Capacity, _level + amount);
    }

    /// <summary>Lowers the level to what the provider says is left; never raises it.</summary>
    public void LimitTo(double remaining, DateTimeOffset now)
    {
        Refill(now);
        _level = Math.Min(_level, remaining);
    }

    /// <summary>Changes the rate, keeping the level (cut to the new capacity).</summary>
    public void SetRate(double perSecond, double capacity, DateTimeOffset now)
    {
        Refill(now);
        PerSecond = perSecond;
        Capacity = capacity;
        _level = Math.Min(_level, capacity);
    }

    private void Refill(DateTimeOffset now)
    {
        var elapsed = (now - _refilledAt).TotalSeconds;
        if (elapsed > 0)
        {
            _level = Math.Min(Capacity, _level + (elapsed * PerSecond));
            _refilledAt = now;
        }
    }
}
