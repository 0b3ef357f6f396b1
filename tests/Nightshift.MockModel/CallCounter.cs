using System.Collections.Concurrent;

namespace Nightshift.MockModel;

/// <summary>
/// The mock's own count of completion calls and their outcomes. Exact under any parallelism, because
/// the invariants the tests and benchmarks assert (the global cap, exactly-once calls, throughput
/// against the limits) are read from here.
/// </summary>
internal sealed class CallCounter(TimeProvider time)
{
    private readonly ConcurrentDictionary<string, int> _calls = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<int, int> _callsByClientPort = new();
    private readonly ConcurrentDictionary<string, ConcurrentQueue<double?>> _temperatures = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, int> _callsByModel = new(StringComparer.Ordinal);

    // Everything below changes together under _lock: the time-weighted concurrency needs the count in
    // flight and the moment it changed to move as one.
    private readonly Lock _lock = new();
    private readonly Dictionary<string, long> _injected = new(StringComparer.Ordinal);
    private readonly Dictionary<int, long> _statusCounts = [];
    private readonly List<long> _successes = [];
    private readonly List<long> _arrivals = [];
    private readonly Dictionary<string, (int Current, int Peak)> _groups = new(StringComparer.Ordinal);
    private long _total;
    private int _current;
    private int _peak;
    private long _rateLimited;
    private long _tokensAdmitted;
    private long _tokensSucceeded;
    private DateTimeOffset? _firstArrival;
    private DateTimeOffset? _lastDeparture;
    private DateTimeOffset _changedAt;
    private double _inFlightTicks;
    private double _inFlightTicksAtLastDeparture;

    /// <summary>
    /// Counts a request the moment it arrives and returns its 1-based attempt number for <paramref name="customId"/>.
    /// <paramref name="clientPort"/> is the caller's TCP port, which tells apart the processes calling.
    /// </summary>
    public int Arrive(string customId, int clientPort)
    {
        _callsByClientPort.AddOrUpdate(clientPort, 1, static (_, count) => count + 1);
        lock (_lock)
        {
            var now = time.GetUtcNow();
            Accumulate(now);
            if (_firstArrival is null)
            {
                _firstArrival = now;
                _changedAt = now;
            }

            _arrivals.Add(now.ToUnixTimeMilliseconds());
            _total++;
            _current++;
            _peak = Math.Max(_peak, _current);
            var (current, peak) = _groups.GetValueOrDefault(Group(customId));
            _groups[Group(customId)] = (current + 1, Math.Max(peak, current + 1));
        }

        // AddOrUpdate retries its update on contention, so each arrival gets a distinct attempt number.
        return _calls.AddOrUpdate(customId, 1, static (_, count) => count + 1);
    }

    /// <summary>Notes the <c>temperature</c> a request for <paramref name="customId"/> asked for (<c>null</c>: none), and the model it asked.</summary>
    public void Asked(string customId, double? temperature, string model)
    {
        _temperatures.GetOrAdd(customId, _ => new()).Enqueue(temperature);
        _callsByModel.AddOrUpdate(model, 1, static (_, count) => count + 1);
    }

    /// <summary>The temperatures each custom id's requests asked for, in the order they were read.</summary>
    public Dictionary<string, double?[]> Temperatures() => _temperatures.ToDictionary(entry => entry.Key, entry => entry.Value.ToArray(), StringComparer.Ordinal);

    /// <summary>
    /// The group a custom id counts in: its part before the last <c>-</c> (<c>team-a-17</c> is in <c>team-a</c>),
    /// so tests mark the groups whose concurrency they assert in the ids themselves.
    /// </summary>
    public static string Group(string customId) => customId.LastIndexOf('-') is > 0 and var end ? customId[..end] : customId;

    /// <summary>Frees the request's concurrency slot; called once per <see cref="Arrive"/>, whatever the outcome.</summary>
    public void Leave(string customId)
    {
        lock (_lock)
        {
            var now = time.GetUtcNow();
            Accumulate(now);
            _current--;
            var (current, peak) = _groups[Group(customId)];
            _groups[Group(customId)] = (current - 1, peak);
            if (_firstArrival is not null)
            {
                _lastDeparture = now;
                _inFlightTicksAtLastDeparture = _inFlightTicks;
            }
        }
    }

    /// <summary>Counts a request the buckets refused.</summary>
    public void RateLimited()
    {
        lock (_lock)
        {
            _rateLimited++;
        }
    }

    /// <summary>Counts the tokens of a request the buckets admitted.</summary>
    public void Admitted(int tokens)
    {
        lock (_lock)
        {
            _tokensAdmitted += tokens;
        }
    }

    /// <summary>Counts a fault as it takes effect.</summary>
    public void Injected(InjectedFault fault)
    {
        var name = FaultInjector.Name(fault);
        lock (_lock)
        {
            _injected[name] = _injected.GetValueOrDefault(name) + 1;
        }
    }

    /// <summary>
    /// Counts an answer whose status line was sent; <paramref name="whole"/> when its body was sent in
    /// full, <paramref name="tokens"/> the total of its <c>usage</c> (0 when it is not the mock's own completion).
    /// </summary>
    public void Answered(int status, bool whole, int tokens)
    {
        lock (_lock)
        {
            _statusCounts[status] = _statusCounts.GetValueOrDefault(status) + 1;
            if (status == StatusCodes.Status200OK && whole)
            {
                // Read under the lock, so the list stays in ascending order.
                _successes.Add(time.GetUtcNow().ToUnixTimeMilliseconds());
                _tokensSucceeded += tokens;
            }
        }
    }

    /// <summary>When each 200 was sent in full, in unix milliseconds, ascending.</summary>
    public long[] Successes()
    {
        lock (_lock)
        {
            return [.. _successes];
        }
    }

    /// <summary>When each completion request arrived, in unix milliseconds, ascending (refused ones included).</summary>
    public long[] Arrivals()
    {
        lock (_lock)
        {
            return [.. _arrivals];
        }
    }

    public MockModelStats Snapshot()
    {
        lock (_lock)
        {
            var span = _lastDeparture - _firstArrival;
            return new MockModelStats(
                _total,
                _current,
                _peak,
                new Dictionary<string, int>(_calls, StringComparer.Ordinal),
                new Dictionary<int, int>(_callsByClientPort))
            {
                Succeeded = _successes.Count,
                CallsByModel = new Dictionary<string, int>(_callsByModel, StringComparer.Ordinal),
                PeakByGroup = _groups.ToDictionary(group => group.Key, group => group.Value.Peak, StringComparer.Ordinal),
                RateLimited = _rateLimited,
                Injected = FaultInjector.Names.ToDictionary(name => name, name => _injected.GetValueOrDefault(name), StringComparer.Ordinal),
                StatusCounts = new Dictionary<int, long>(_statusCounts),
                TokensAdmitted = _tokensAdmitted,
                TokensSucceeded = _tokensSucceeded,
                AverageInFlight = span > TimeSpan.Zero ? _inFlightTicksAtLastDeparture / span.Value.Ticks : 0,
                FirstArrival = _firstArrival?.ToUnixTimeMilliseconds(),
                LastDeparture = _lastDeparture?.ToUnixTimeMilliseconds(),
            };
        }
    }

    public void Reset()
    {
        _calls.Clear();
        _callsByClientPort.Clear();
        _temperatures.Clear();
        _callsByModel.Clear();
        lock (_lock)
        {
            // Requests still in flight keep running concurrently, so the new peak starts from them.
            _total = 0;
            _peak = _current;
            foreach (var (group, (current, _)) in _groups.ToList())
            {
                _groups[group] = (current, current);
            }

            _rateLimited = 0;
            _tokensAdmitted = 0;
            _tokensSucceeded = 0;
            _injected.Clear();
            _statusCounts.Clear();
            _successes.Clear();
            _arrivals.Clear();
            _firstArrival = null;
            _lastDeparture = null;
            _inFlightTicks = 0;
            _inFlightTicksAtLastDeparture = 0;
        }
    }

    /// <summary>Adds the requests in flight × the time since the last change; nothing before the first arrival.</summary>
    private void Accumulate(DateTimeOffset now)
    {
        if (_firstArrival is not null && now > _changedAt)
        {
            _inFlightTicks += _current * (double)(now - _changedAt).Ticks;
        }

        _changedAt = now;
    }
}
