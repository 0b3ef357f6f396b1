using System.Diagnostics;

namespace Nightshift.Tests.Fixtures;

/// <summary>
/// The one way the tests wait for what happens on another thread, silo or process: poll a probe until
/// its value is accepted, and fail with a description of the last value seen once the deadline has
/// passed. The deadline only bounds a failure: a passing test waits only as long as it must.
/// </summary>
public static class Eventually
{
    /// <summary>How long a wait may take before it fails the test, unless the caller says otherwise.</summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromSeconds(60);

    private static readonly TimeSpan DefaultPeriod = TimeSpan.FromMilliseconds(20);

    /// <summary>
    /// Polls <paramref name="probe"/> every <paramref name="period"/> until <paramref name="accept"/> holds for
    /// its value, and returns that value; fails after <paramref name="timeout"/> with <paramref name="describe"/>
    /// of the last value.
    /// </summary>
    public static async Task<T> MatchesAsync<T>(Func<Task<T>> probe, Func<T, bool> accept, Func<T, string> describe,
        TimeSpan? timeout = null, TimeSpan? period = null)
    {
        var limit = timeout ?? DefaultTimeout;
        var started = Stopwatch.GetTimestamp();
        while (true)
        {
            var value = await probe();
            if (accept(value))
            {
                return value;
            }

            if (Stopwatch.GetElapsedTime(started) > limit)
            {
                Assert.Fail($"not so within {limit}: {describe(value)}");
            }

            await Task.Delay(period ?? DefaultPeriod, TestContext.Current.CancellationToken);
        }
    }

    /// <summary><see cref="MatchesAsync{T}(Func{Task{T}}, Func{T, bool}, Func{T, string}, TimeSpan?, TimeSpan?)"/> for a probe that does not wait.</summary>
    public static Task<T> MatchesAsync<T>(Func<T> probe, Func<T, bool> accept, Func<T, string> describe,
        TimeSpan? timeout = null, TimeSpan? period = null) =>
        MatchesAsync(() => Task.FromResult(probe()), accept, describe, timeout, period);

    /// <summary>Polls until <paramref name="condition"/> holds; fails after <paramref name="timeout"/> with <paramref name="describe"/>.</summary>
    public static Task HoldsAsync(Func<Task<bool>> condition, Func<string> describe, TimeSpan? timeout = null, TimeSpan? period = null) =>
        MatchesAsync(condition, holds => holds, _ => describe(), timeout, period);

    /// <summary><see cref="HoldsAsync(Func{Task{bool}}, Func{string}, TimeSpan?, TimeSpan?)"/> for a condition that does not wait.</summary>
    public static Task HoldsAsync(Func<bool> condition, Func<string> describe, TimeSpan? timeout = null, TimeSpan? period = null) =>
        MatchesAsync(() => Task.FromResult(condition()), holds => holds, _ => describe(), timeout, period);
}
