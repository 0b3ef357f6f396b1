using System.Diagnostics;
using System.Globalization;
using Nightshift.Models;
using Nightshift.Pools;

namespace Nightshift.Diagnostics;

/// <summary>
/// One model call's span (<c>chat {model}</c>, kind client, with the GenAI semantic conventions'
/// attributes) and its duration and token metrics. Attributes are built only when someone listens.
/// </summary>
internal readonly struct ModelCallTelemetry : IDisposable
{
    private readonly Activity? _span;
    private readonly TagList _tags;
    private readonly long _started;
    private readonly TimeProvider _time;

    private ModelCallTelemetry(Activity? span, TagList tags, long started, TimeProvider time)
    {
        _span = span;
        _tags = tags;
        _started = started;
        _time = time;
    }

    public static ModelCallTelemetry Start(string pool, ModelBinding model, TimeProvider time)
    {
        var tags = new TagList();
        if (ModelInstruments.Duration.Enabled || ModelInstruments.Tokens.Enabled || NightshiftTelemetry.Source.HasListeners())
        {
            tags.Add(NightshiftTelemetry.Tags.GenAiOperationName, NightshiftTelemetry.Spans.ChatOperation);
            tags.Add(NightshiftTelemetry.Tags.GenAiProviderName, model.Provider);
            tags.Add(NightshiftTelemetry.Tags.GenAiRequestModel, model.Model);
            tags.Add(NightshiftTelemetry.Tags.Pool, pool);
            if (model.Endpoint is { } endpoint && Uri.TryCreate(endpoint, UriKind.Absolute, out var uri))
            {
                tags.Add(NightshiftTelemetry.Tags.ServerAddress, uri.Host);
            }
        }

        var span = NightshiftTelemetry.Source.StartActivity($"{NightshiftTelemetry.Spans.ChatOperation} {model.Model}", ActivityKind.Client, parentContext: default, tags);
        return new ModelCallTelemetry(span, tags, time.GetTimestamp(), time);
    }

    /// <summary>Records the call's end; <paramref name="stopped"/> names why it was cut short (cancelled, interrupted), if it was.</summary>
    public void End(ModelCallResult result, string? stopped)
    {
        var errorType = stopped ?? result.Status switch
        {
            ModelCallStatus.Succeeded => null,
            ModelCallStatus.HttpError => result.StatusCode.ToString(CultureInfo.InvariantCulture),
            ModelCallStatus.Timeout => "timeout",
            ModelCallStatus.NetworkError => "network",
            _ => "misconfigured",
        };

        var tags = _tags;
        if (errorType is not null)
        {
            tags.Add(NightshiftTelemetry.Tags.ErrorType, errorType);
        }

        if (ModelInstruments.Duration.Enabled)
        {
            ModelInstruments.Duration.Record(_time.GetElapsedTime(_started).TotalSeconds, tags);
        }

        if (ModelInstruments.Tokens.Enabled && result.Status == ModelCallStatus.Succeeded)
        {
            var input = _tags;
            input.Add(NightshiftTelemetry.Tags.GenAiTokenType, "input");
            ModelInstruments.Tokens.Record(result.Usage.InputTokens, input);
            var output = _tags;
            output.Add(NightshiftTelemetry.Tags.GenAiTokenType, "output");
            ModelInstruments.Tokens.Record(result.Usage.OutputTokens, output);
        }

        if (_span is null)
        {
            return;
        }

        if (result.StatusCode != 0)
        {
            _span.SetTag(NightshiftTelemetry.Tags.HttpStatusCode, result.StatusCode);
        }

        if (result.Status == ModelCallStatus.Succeeded)
        {
            _span.SetTag(NightshiftTelemetry.Tags.GenAiInputTokens, result.Usage.InputTokens);
            _span.SetTag(NightshiftTelemetry.Tags.GenAiOutputTokens, result.Usage.OutputTokens);
        }
        else
        {
            _span.SetTag(NightshiftTelemetry.Tags.ErrorType, errorType);
            _span.SetStatus(ActivityStatusCode.Error, result.Error);
        }
    }

    public void Dispose() => _span?.Dispose();
}
