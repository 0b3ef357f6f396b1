using System.Diagnostics.Metrics;

namespace Nightshift.Diagnostics;

/// <summary>What became of items' attempts: finished, failed, retried.</summary>
public static class ItemInstruments
{
    public static readonly Counter<long> Completed = NightshiftTelemetry.Meter.CreateCounter<long>(
        "nightshift.item.completed", "{item}", "Items that succeeded.");

    public static readonly Counter<long> Failed = NightshiftTelemetry.Meter.CreateCounter<long>(
        "nightshift.item.failed", "{item}", "Items that failed for good (attempts exhausted or a permanent error).");

    public static readonly Counter<long> Retries = NightshiftTelemetry.Meter.CreateCounter<long>(
        "nightshift.item.retries", "{retry}", "Attempts that ended in a retry; nightshift.retry.reason is rate_limited or error.");
}
