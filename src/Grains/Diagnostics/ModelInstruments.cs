using System.Diagnostics.Metrics;

namespace Nightshift.Diagnostics;

/// <summary>Model calls, as the OpenTelemetry GenAI semantic conventions name their client metrics.</summary>
public static class ModelInstruments
{
    public static readonly Histogram<double> Duration = NightshiftTelemetry.Meter.CreateHistogram<double>(
        "gen_ai.client.operation.duration", "s", "Duration of each model call, whatever its outcome.", tags: null, NightshiftTelemetry.SecondsBuckets);

    public static readonly Histogram<long> Tokens = NightshiftTelemetry.Meter.CreateHistogram<long>(
        "gen_ai.client.token.usage", "{token}", "Tokens per model call, by gen_ai.token.type (input, output).", tags: null, NightshiftTelemetry.TokenBuckets);
}
