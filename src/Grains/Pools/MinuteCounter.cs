using System.Collections.Immutable;

namespace Nightshift.Pools;

/// <summary>A <see cref="MinuteCounter"/> as saved: its one-second slots and the newest second they count.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.MinuteCounts")]
public sealed record MinuteCounts([property: Id(0)] long NewestSecond, [property: Id(1)] ImmutableArray<long> Slots);

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

    public MinuteCounts Save() => new(_newestSecond, [.. _slots]);

    /// <summary>Takes over what an earlier counter saved; seconds that have passed since drop out as they would have.</summary>
    public void Restore(MinuteCounts saved)
    {
        if (saved.Slots.Length == _slots.Length)
        {
            saved.Slots.CopyTo(_slots);
            _newestSecond = saved.NewestSecond;
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
