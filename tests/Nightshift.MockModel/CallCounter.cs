using System.Collections.Concurrent;

namespace Nightshift.MockModel;

/// <summary>
/// The mock's own count of completion calls. Exact under any parallelism, because the invariants the
/// tests assert (the global cap, exactly-once calls) are read from here.
/// </summary>
internal sealed class CallCounter
{
    private readonly ConcurrentDictionary<string, int> _calls = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, int> _callsByClientPort = new();
    private long _total;
    private int _current;
    private int _peak;

    /// <summary>
    /// Counts a request the moment it arrives and returns its 1-based attempt number for <paramref name="customId"/>.
    /// <paramref name="clientPort"/> is the caller's TCP port, which tells apart the processes calling.
    /// </summary>
    public int Arrive(string customId, int clientPort)
    {
        Interlocked.Increment(ref _total);
        _callsByClientPort.AddOrUpdate(clientPort, 1, static (_, count) => count + 1);
        UpdatePeak(Interlocked.Increment(ref _current));

        // AddOrUpdate retries its update on contention, so each arrival gets a distinct attempt number.
        return _calls.AddOrUpdate(customId, 1, static (_, count) => count + 1);
    }

    /// <summary>Frees the request's concurrency slot; called once per <see cref="Arrive"/>, whatever the outcome.</summary>
    public void Leave() => Interlocked.Decrement(ref _current);

    public MockModelStats Snapshot() => new(
        Interlocked.Read(ref _total),
        Volatile.Read(ref _current),
        Volatile.Read(ref _peak),
        new Dictionary<string, int>(_calls, StringComparer.Ordinal),
        new Dictionary<int, int>(_callsByClientPort));

    public void Reset()
    {
        Interlocked.Exchange(ref _total, 0);
        _calls.Clear();
        _callsByClientPort.Clear();

        // Requests still in flight keep running concurrently, so the new peak starts from them. Reading
        // _current after the write also covers an arrival whose peak update the write overwrote.
        Volatile.Write(ref _peak, 0);
        UpdatePeak(Volatile.Read(ref _current));
    }

    private void UpdatePeak(int running)
    {
        var peak = Volatile.Read(ref _peak);
        while (running > peak)
        {
            var seen = Interlocked.CompareExchange(ref _peak, running, peak);
            if (seen == peak)
            {
                return;
            }

            peak = seen;
        }
    }
}
