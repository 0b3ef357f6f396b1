using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Nightshift.Batches;
using Nightshift.Pools;
using Nightshift.Storage;

namespace Nightshift.Api.Dashboard;

/// <summary>Something an operator should see: a 429, a cooldown, a silo's death, a pool taken over, a batch paused.</summary>
public sealed record DashboardEvent(long Sequence, DateTimeOffset At, string Kind, string Message);

/// <summary>A batch's throughput over one sampling interval.</summary>
public sealed record ThroughputPoint(DateTimeOffset At, double ItemsPerSecond);

/// <summary>What the dashboard shows beside the API's live figures: 429s in the last minute per pool, and each batch's last hour of throughput.</summary>
public sealed record DashboardHistory(IReadOnlyDictionary<string, long> RateLimitedLastMinute, IReadOnlyDictionary<string, IReadOnlyList<ThroughputPoint>> Throughput);

/// <summary>
/// Watches the cluster through the same grains the API asks (every <see cref="Period"/>) and turns what
/// changed into events and history, so the dashboard shows what happened while nobody looked. It
/// keeps only this process's view since it started: the last <see cref="EventCapacity"/> events and
/// an hour of throughput.
/// </summary>
internal sealed partial class DashboardMonitor(IGrainFactory grains, IItemCatalogue store, TimeProvider time, ILogger<DashboardMonitor> logger) : BackgroundService
{
    public static readonly TimeSpan Period = TimeSpan.FromSeconds(1);

    /// <summary>The kind of the events that name a batch (paused, resumed, cancelled, completed).</summary>
    public const string BatchKind = "batch";

    private static readonly TimeSpan SampleEvery = TimeSpan.FromSeconds(5);

    private static readonly TimeSpan HistoryLength = TimeSpan.FromHours(1);

    private const int EventCapacity = 500;

    /// <summary>Batches looked at per state each round: the newest running and paused ones.</summary>
    private const int WatchedBatches = 100;

    private readonly Lock _lock = new();
    private readonly LinkedList<DashboardEvent> _events = new();
    private readonly Dictionary<string, PoolSnapshot> _pools = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Queue<(DateTimeOffset At, long RateLimited)>> _rateLimited = new(StringComparer.Ordinal);
    private readonly Dictionary<string, string> _silos = new(StringComparer.Ordinal);
    private readonly Dictionary<string, BatchState> _batches = new(StringComparer.Ordinal);
    private readonly Dictionary<string, List<(DateTimeOffset At, long Done)>> _progress = new(StringComparer.Ordinal);
    private long _sequence;

    /// <summary>Events after <paramref name="after"/> (a sequence number), oldest first.</summary>
    public IReadOnlyList<DashboardEvent> EventsAfter(long after)
    {
        lock (_lock)
        {
            return [.. _events.Where(e => e.Sequence > after)];
        }
    }

    public DashboardHistory History()
    {
        lock (_lock)
        {
            var rateLimited = _rateLimited.ToDictionary(p => p.Key, p => p.Value.Count > 0 ? p.Value.Last().RateLimited - p.Value.Peek().RateLimited : 0, StringComparer.Ordinal);
            var throughput = _progress.ToDictionary(b => b.Key, b => (IReadOnlyList<ThroughputPoint>)[.. Points(b.Value)], StringComparer.Ordinal);
            return new DashboardHistory(rateLimited, throughput);
        }

        static IEnumerable<ThroughputPoint> Points(List<(DateTimeOffset At, long Done)> samples)
        {
            for (var i = 1; i < samples.Count; i++)
            {
                var seconds = (samples[i].At - samples[i - 1].At).TotalSeconds;
                yield return new ThroughputPoint(samples[i].At, seconds > 0 ? Math.Round((samples[i].Done - samples[i - 1].Done) / seconds, 2) : 0);
            }
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(Period, time);
        try
        {
            do
            {
                try
                {
                    await ObserveAsync(stoppingToken);
                }
                catch (Exception failure) when (failure is not OperationCanceledException || !stoppingToken.IsCancellationRequested)
                {
                    // The cluster may be starting or losing a silo: that is what the next round will show.
                    LogObservationFailed(logger, failure);
                }
            }
            while (await timer.WaitForNextTickAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // The host is stopping.
        }
    }

    private async Task ObserveAsync(CancellationToken cancellationToken)
    {
        var now = time.GetUtcNow();
        var hosts = await grains.GetGrain<IManagementGrain>(0).GetDetailedHosts(onlyActive: false, cancellationToken);
        var poolNames = await store.ListPoolsAsync(cancellationToken);
        var pools = await Task.WhenAll(poolNames.Select(name => grains.GetGrain<IPoolGrain>(name).GetSnapshot()));
        var records = (await store.ListBatchesAsync(BatchState.Running, 0, WatchedBatches, cancellationToken))
            .Concat(await store.ListBatchesAsync(BatchState.Paused, 0, WatchedBatches, cancellationToken))
            .Select(r => r.BatchId)
            .Concat(_batches.Keys.ToList())
            .Distinct(StringComparer.Ordinal)
            .ToList();
        var batches = await Task.WhenAll(records.Select(id => grains.GetGrain<IBatchGrain>(id).GetStatus()));

        lock (_lock)
        {
            foreach (var host in hosts)
            {
                ObserveSilo(now, host.SiloAddress.ToString(), host.HostName, host.Status);
            }

            foreach (var pool in pools)
            {
                ObservePool(now, pool);
            }

            foreach (var batch in batches)
            {
                ObserveBatch(now, batch);
            }

            foreach (var stale in _progress.Where(p => p.Value.Count > 0 && now - p.Value[^1].At > HistoryLength).Select(p => p.Key).ToList())
            {
                _progress.Remove(stale);
            }
        }
    }

    private void ObserveSilo(DateTimeOffset now, string address, string? hostName, SiloStatus status)
    {
        var name = status.ToString().ToLowerInvariant();
        var seen = _silos.TryGetValue(address, out var before);
        _silos[address] = name;
        if (seen && before == name)
        {
            return;
        }

        if (status == SiloStatus.Dead && (seen || _sequence > 0))
        {
            Add(now, "silo-death", $"silo {address} on {hostName} died");
        }
        else if (status == SiloStatus.Active)
        {
            Add(now, "silo-joined", $"silo {address} on {hostName} joined");
        }
    }

    private void ObservePool(DateTimeOffset now, PoolSnapshot pool)
    {
        if (!_rateLimited.TryGetValue(pool.Name, out var samples))
        {
            _rateLimited[pool.Name] = samples = new Queue<(DateTimeOffset, long)>();
        }

        samples.Enqueue((now, pool.RateLimited));
        while (samples.Count > 1 && now - samples.Peek().At > TimeSpan.FromMinutes(1))
        {
            samples.Dequeue();
        }

        if (_pools.TryGetValue(pool.Name, out var before))
        {
            if (pool.RateLimited > before.RateLimited)
            {
                Add(now, "rate-limit", $"pool {pool.Name}: {pool.RateLimited - before.RateLimited} call(s) answered 429");
            }

            if (pool.CooldownUntil is { } until && (before.CooldownUntil is null || until > before.CooldownUntil.Value.AddSeconds(1)))
            {
                Add(now, "cooldown", $"pool {pool.Name} paused: cooling down until {until:HH:mm:ss} (then a slow start)");
            }

            if (pool.Silo != before.Silo)
            {
                Add(now, "takeover", pool.RecoveringUntil is { } recovering
                    ? $"pool {pool.Name} taken over by {pool.Silo}: adopting live leases until {recovering:HH:mm:ss}"
                    : $"pool {pool.Name} now runs on {pool.Silo}");
            }
            else if (pool.RecoveringUntil is { } recovering && before.RecoveringUntil is null)
            {
                Add(now, "takeover", $"pool {pool.Name} recovering leases until {recovering:HH:mm:ss}");
            }

            if (pool.Config.MaxRunning != before.Config.MaxRunning)
            {
                Add(now, "pool", $"pool {pool.Name}: maxRunning {before.Config.MaxRunning} → {pool.Config.MaxRunning}");
            }
        }

        _pools[pool.Name] = pool;
    }

    private void ObserveBatch(DateTimeOffset now, BatchStatus batch)
    {
        if (batch.State == BatchState.NotFound)
        {
            _batches.Remove(batch.BatchId);
            return;
        }

        if (_batches.TryGetValue(batch.BatchId, out var before) && before != batch.State)
        {
            Add(now, BatchKind, $"batch {batch.BatchId} {batch.State.ToString().ToLowerInvariant()}");
        }

        var done = batch.Done;
        if (!_progress.TryGetValue(batch.BatchId, out var samples))
        {
            _progress[batch.BatchId] = samples = [];
        }

        if (samples.Count == 0 || now - samples[^1].At >= SampleEvery)
        {
            samples.Add((now, done));
            samples.RemoveAll(s => now - s.At > HistoryLength);
        }

        // A finished batch is watched no more; its history stays for the hour.
        if (batch.IsFinished)
        {
            _batches.Remove(batch.BatchId);
        }
        else
        {
            _batches[batch.BatchId] = batch.State;
        }
    }

    private void Add(DateTimeOffset now, string kind, string message)
    {
        _events.AddLast(new DashboardEvent(++_sequence, now, kind, message));
        if (_events.Count > EventCapacity)
        {
            _events.RemoveFirst();
        }
    }

    [LoggerMessage(EventId = 5001, Level = LogLevel.Debug, Message = "The dashboard monitor could not observe the cluster this round")]
    private static partial void LogObservationFailed(ILogger logger, Exception exception);
}
