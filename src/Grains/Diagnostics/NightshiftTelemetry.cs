using System.Diagnostics;
using System.Diagnostics.Metrics;

namespace Nightshift.Diagnostics;

/// <summary>
/// Nightshift's one <see cref="ActivitySource"/> and one <see cref="Meter"/>, both named
/// <see cref="Name"/>, and the names of every span and attribute they carry. The per-area
/// instruments (<see cref="PoolInstruments"/>, <see cref="ItemInstruments"/>, <see cref="ModelInstruments"/>)
/// share the meter.
/// </summary>
public static class NightshiftTelemetry
{
    /// <summary>The name of the activity source and of the meter: what an OpenTelemetry pipeline subscribes to.</summary>
    public const string Name = "Nightshift";

    public static readonly ActivitySource Source = new(Name);

    public static readonly Meter Meter = new(Name);

    /// <summary>Bucket bounds for durations in seconds, from 10 ms to about 82 s (the GenAI conventions' advice).</summary>
    public static readonly InstrumentAdvice<double> SecondsBuckets = new()
    {
        HistogramBucketBoundaries = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92],
    };

    /// <summary>Bucket bounds for tokens per call, powers of four up to 64 Mi (the GenAI conventions' advice).</summary>
    public static readonly InstrumentAdvice<long> TokenBuckets = new()
    {
        HistogramBucketBoundaries = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864],
    };

    /// <summary>Span names.</summary>
    public static class Spans
    {
        public const string SubmitBatch = "nightshift.batch.submit";

        public const string ExecuteItem = "nightshift.item.execute";

        /// <summary>Emitted only when the item's batch actually waited for the slot.</summary>
        public const string SlotWait = "nightshift.pool.slot_wait";

        /// <summary>The GenAI conventions name a model call "{gen_ai.operation.name} {gen_ai.request.model}".</summary>
        public const string ChatOperation = "chat";
    }

    /// <summary>Attribute names: Nightshift's own, and the OpenTelemetry semantic conventions' (<c>gen_ai.*</c>, <c>error.type</c>).</summary>
    public static class Tags
    {
        public const string Pool = "nightshift.pool";
        public const string BatchId = "nightshift.batch.id";
        public const string ItemIndex = "nightshift.item.index";
        public const string ItemCount = "nightshift.batch.items";
        public const string Attempt = "nightshift.item.attempt";
        public const string Outcome = "nightshift.item.outcome";
        public const string Rejection = "nightshift.batch.rejection";
        public const string RetryReason = "nightshift.retry.reason";

        public const string GenAiOperationName = "gen_ai.operation.name";
        public const string GenAiProviderName = "gen_ai.provider.name";
        public const string GenAiRequestModel = "gen_ai.request.model";
        public const string GenAiInputTokens = "gen_ai.usage.input_tokens";
        public const string GenAiOutputTokens = "gen_ai.usage.output_tokens";
        public const string GenAiTokenType = "gen_ai.token.type";
        public const string ServerAddress = "server.address";
        public const string HttpStatusCode = "http.response.status_code";
        public const string ErrorType = "error.type";
    }
}
