using System.Buffers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Options;

namespace Nightshift.Models;

/// <summary>
/// A model that answers from the request itself: the same body always gets the same content, so
/// results can be verified. Latency, 500s and 429s are configurable and, per attempt, deterministic.
/// It counts the calls it is serving, so tests can check the global cap from the model's side.
/// </summary>
public sealed class SimulatedModel : IChatModel, IDisposable
{
    private readonly SimulatedModelOptions _options;
    private readonly TimeProvider _time;
    private readonly StreamWriter? _callLog;
    private readonly Lock _callLogLock = new();
    private int _current;
    private int _peak;
    private long _calls;

    public SimulatedModel(IOptions<SimulatedModelOptions> options, TimeProvider time)
    {
        _options = options.Value;
        _time = time;
        if (_options.CallLog is { } path)
        {
            _callLog = new StreamWriter(new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite));
        }
    }

    /// <summary>Calls running now.</summary>
    public int Current => Volatile.Read(ref _current);

    /// <summary>Most calls that ran at once since start or the last <see cref="ResetPeak"/>.</summary>
    public int Peak => Volatile.Read(ref _peak);

    /// <summary>Calls started since the process started.</summary>
    public long Calls => Interlocked.Read(ref _calls);

    public void ResetPeak() => Volatile.Write(ref _peak, Current);

    /// <summary>The assistant content the simulated model answers to <paramref name="body"/>.</summary>
    public static string ExpectedContent(string body) =>
        "sim-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(body)).AsSpan(0, 8));

    public async Task<ModelCallResult> CompleteAsync(ModelRequest request, CancellationToken cancellationToken)
    {
        var running = Interlocked.Increment(ref _current);
        Interlocked.Increment(ref _calls);
        UpdatePeak(running);
        try
        {
            LogCall(request.CustomId);
            var roll = Roll(request.Body, request.Attempt);
            var latency = _options.LatencyMin + ((_options.LatencyMax - _options.LatencyMin) * roll.Latency);
            if (latency > TimeSpan.Zero)
            {
                await Task.Delay(latency, _time, cancellationToken);
            }

            if (roll.Outcome < _options.RateLimitRate)
            {
                return ModelCallResult.Http(429, """{"error":{"message":"simulated rate limit","type":"rate_limit_exceeded"}}""",
                    "429 Too Many Requests (simulated)", _options.RetryAfter);
            }

            if (roll.Outcome < _options.RateLimitRate + _options.ErrorRate)
            {
                return ModelCallResult.Http(500, """{"error":{"message":"simulated server error","type":"server_error"}}""",
                    "500 Internal Server Error (simulated)");
            }

            var inputTokens = Math.Max(1, request.Body.Length / 4);
            const int outputTokens = 8;
            return ModelCallResult.Success(ResponseBody(request, inputTokens, outputTokens), new TokenUsage(inputTokens, outputTokens));
        }
        finally
        {
            Interlocked.Decrement(ref _current);
        }
    }

    public void Dispose() => _callLog?.Dispose();

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

    private void LogCall(string customId)
    {
        if (_callLog is null)
        {
            return;
        }

        lock (_callLogLock)
        {
            _callLog.WriteLine(customId);
            _callLog.Flush();
        }
    }

    private static (double Latency, double Outcome) Roll(string body, int attempt)
    {
        Span<byte> hash = stackalloc byte[32];
        var input = Encoding.UTF8.GetBytes($"{attempt}:{body}");
        SHA256.HashData(input, hash);
        var latency = BitConverter.ToUInt32(hash[..4]) / (double)uint.MaxValue;
        var outcome = BitConverter.ToUInt32(hash[4..8]) / (double)uint.MaxValue;
        return (latency, outcome);
    }

    private static string ResponseBody(ModelRequest request, long inputTokens, long outputTokens)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer))
        {
            var content = ExpectedContent(request.Body);
            json.WriteStartObject();
            json.WriteString("id", "chatcmpl-" + content);
            json.WriteString("object", "chat.completion");
            json.WriteNumber("created", 0);
            json.WriteString("model", request.Model);
            json.WriteStartArray("choices");
            json.WriteStartObject();
            json.WriteNumber("index", 0);
            json.WriteStartObject("message");
            json.WriteString("role", "assistant");
            json.WriteString("content", content);
            json.WriteEndObject();
            json.WriteString("finish_reason", "stop");
            json.WriteEndObject();
            json.WriteEndArray();
            json.WriteStartObject("usage");
            json.WriteNumber("prompt_tokens", inputTokens);
            json.WriteNumber("completion_tokens", outputTokens);
            json.WriteNumber("total_tokens", inputTokens + outputTokens);
            json.WriteEndObject();
            json.WriteEndObject();
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }
}
