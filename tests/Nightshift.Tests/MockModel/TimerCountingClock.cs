using Microsoft.Extensions.Time.Testing;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.MockModel;

/// <summary>
/// A fake clock that counts the timers created on it, so a test knows a request is waiting out its
/// latency (its <c>Task.Delay</c> is registered) before it advances the time past it.
/// </summary>
internal sealed class TimerCountingClock() : FakeTimeProvider(DateTimeOffset.FromUnixTimeMilliseconds(StartUnixMs))
{
    /// <summary>The clock's start, in unix milliseconds.</summary>
    public const long StartUnixMs = 1_800_000_000_000;

    private int _timers;

    public int Timers => Volatile.Read(ref _timers);

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        var timer = base.CreateTimer(callback, state, dueTime, period);
        Interlocked.Increment(ref _timers);
        return timer;
    }

    /// <summary>Waits until <paramref name="count"/> timers have been created.</summary>
    public Task WaitForTimersAsync(int count) =>
        Eventually.HoldsAsync(() => Timers >= count, () => $"{Timers} timers created, not {count}", TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(5));
}
