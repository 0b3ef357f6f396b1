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
