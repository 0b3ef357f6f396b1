namespace Nightshift.Pools;

/// <summary>
/// A sum over the last minute in one-second slots: constant memory whatever the rate, unlike a queue
/// of every event. Not thread-safe; the pool grain's turns serialize every call.
/// </summary>
internal sealed class MinuteCounter
{
    private readonly long[] _slots = new long[60];
    private long _newestSecond = long.MinValue;

    public void Add(long amount, DateTimeOffset now)
    {
        if (amount != 0)
        {
            _slots[Advance(now)] += amount;
        }
    }

    public long Total(DateTimeOffset now)
    {
        Advance(now);
        return _slots.Sum();
    }

    /// <summary>Clears the slots of the seconds that passed since the newest one; returns the slot of <paramref name="now"/>.</summary>
    private int Advance(DateTimeOffset now)
    {
        var second = now.ToUnixTimeSeconds();
        if (second > _newestSecond)
        {
            var stale = Math.Min(_slots.Length, _newestSecond == long.MinValue ? _slots.Length : second - _newestSecond);
            for (var passed = second - stale + 1; passed <= second; passed++)
            {
                _slots[passed % _slots.Length] = 0;
            }

            _newestSecond = second;
        }

        return (int)(second % _slots.Length);
    }
}
