using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace Nightshift.Diagnostics;

/// <summary>The limiter's metrics: slots in use and items queued per pool, slot waits, 429s and cooldowns.</summary>
public static class PoolInstruments
{
    /// <summary>The latest figures of each pool activated on this process, read by the observable gauges.</summary>
    private static readonly ConcurrentDictionary<string, PoolFigures> Pools = new(StringComparer.Ordinal);

    public static readonly ObservableGauge<int> Running = NightshiftTelemetry.Meter.CreateObservableGauge(
        "nightshift.pool.running", () => Pools.Select(p => new Measurement<int>(p.Value.Running, PoolTag(p.Key))),
        "{call}", "Calls holding a slot of the pool.");

    public static readonly ObservableGauge<long> Queued = NightshiftTelemetry.Meter.CreateObservableGauge(
        "nightshift.pool.queued", () => Pools.Select(p => new Measurement<long>(p.Value.Queued, PoolTag(p.Key))),
        "{item}", "Items of the pool's batches that are neither running nor finished.");

    public static readonly ObservableGauge<int> Cap = NightshiftTelemetry.Meter.CreateObservableGauge(
        "nightshift.pool.cap", () => Pools.Select(p => new Measurement<int>(p.Value.EffectiveCap, PoolTag(p.Key))),
        "{call}", "The cap in force: maxRunning, zero while cooling down, ramping up during the slow start.");

    public static readonly Histogram<double> SlotWait = NightshiftTelemetry.Meter.CreateHistogram<double>(
        "nightshift.pool.slot_wait.duration", "s", "How long a batch waited for each slot it was granted (zero when a slot was free).", tags: null, NightshiftTelemetry.SecondsBuckets);

    public static readonly Counter<long> RateLimited = NightshiftTelemetry.Meter.CreateCounter<long>(
        "nightshift.pool.rate_limited", "{response}", "429 responses from the pool's model.");

    public static readonly Counter<long> Cooldowns = NightshiftTelemetry.Meter.CreateCounter<long>(
        "nightshift.pool.cooldowns", "{cooldown}", "Cooldowns the pool entered (or extended) after a 429.");

    /// <summary>Publishes a pool's figures for the gauges; called by its activation after every change.</summary>
    public static void Report(string pool, int running, long queued, int effectiveCap) => Pools[pool] = new PoolFigures(running, queued, effectiveCap);

    /// <summary>The pool's activation is gone from this process: its figures are no longer this process's to report.</summary>
    public static void Forget(string pool) => Pools.TryRemove(pool, out _);

    public static KeyValuePair<string, object?> PoolTag(string pool) => new(NightshiftTelemetry.Tags.Pool, pool);

    private readonly record struct PoolFigures(int Running, long Queued, int EffectiveCap);
}
