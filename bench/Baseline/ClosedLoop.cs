using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Nightshift.Baseline;

/// <summary>Where the loop sends the lines, as which model, how many at once, and from which file.</summary>
internal sealed record ClosedLoopOptions(Uri Endpoint, string Model, int MaxRunning, string InputPath);

/// <summary>Lines sent, lines answered with a 2xx, and the time from the first request to the last answer.</summary>
internal sealed record ClosedLoopResult(int Items, int Succeeded, TimeSpan FirstRequestToLastResponse);

/// <summary>
/// The least a client can do: each line's body goes out as soon as one of <c>MaxRunning</c> slots is
/// free, and the slot frees when the answer has been read, so the endpoint sees at most that many calls
/// at once and never waits for the client. Nothing is stored. A 429, a 5xx or a transport error is
/// retried after the provider's <c>Retry-After</c> (or a doubling backoff) without holding a slot, as a
/// pool's item waits out its backoff outside the cap.
/// </summary>
internal sealed class ClosedLoop(HttpClient http, ClosedLoopOptions options) : IDisposable
{
    /// <summary>The header a Nightshift pool sends, so the mock counts calls per item for both alike.</summary>
    private const string CustomIdHeader = "X-Nightshift-Custom-Id";

    private const int MaxAttempts = 10;
    private static readonly TimeSpan FirstBackoff = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan LongestBackoff = TimeSpan.FromSeconds(10);

    private readonly SemaphoreSlim _slots = new(options.MaxRunning, options.MaxRunning);
    private readonly Uri _completions = new(options.Endpoint.AbsoluteUri.TrimEnd('/') + "/chat/completions");
    private int _succeeded;

    public void Dispose() => _slots.Dispose();

    public async Task<ClosedLoopResult> RunAsync(CancellationToken cancellationToken)
    {
        // Read and checked in full first, as `run` ingests the file before its first call: a bad line
        // stops the run before anything is sent.
        var lines = await ReadLinesAsync(cancellationToken);
        var started = Stopwatch.GetTimestamp();
        var calls = new List<Task>(lines.Count);
        foreach (var (customId, body) in lines)
        {
            await _slots.WaitAsync(cancellationToken);
            calls.Add(CallAsync(customId, body, cancellationToken));
        }

        // The first request leaves as the loop starts, and the last call's task ends with its answer.
        await Task.WhenAll(calls);
        return new ClosedLoopResult(lines.Count, _succeeded, Stopwatch.GetElapsedTime(started));
    }

    /// <summary>Each line's custom_id and its body with <c>model</c> replaced; blank lines are skipped.</summary>
    private async Task<List<(string CustomId, string Body)>> ReadLinesAsync(CancellationToken cancellationToken)
    {
        var lines = new List<(string, string)>();
        var number = 0;
        await foreach (var text in File.ReadLinesAsync(options.InputPath, cancellationToken))
        {
            number++;
            if (string.IsNullOrWhiteSpace(text))
            {
                continue;
            }

            try
            {
                var line = JsonNode.Parse(text)?.AsObject();
                var customId = line?["custom_id"]?.GetValue<string>();
                var body = line?["body"]?.AsObject();
                if (customId is null || body is null)
                {
                    throw new InvalidDataException($"{options.InputPath}:{number}: a line needs a string custom_id and an object body.");
                }

                body["model"] = options.Model;
                lines.Add((customId, body.ToJsonString()));
            }
            catch (Exception invalid) when (invalid is JsonException or InvalidOperationException)
            {
                throw new InvalidDataException($"{options.InputPath}:{number}: {invalid.Message}", invalid);
            }
        }

        return lines;
    }

    /// <summary>Calls until the line is answered or refused for good; entered holding a slot, and holds one only while a request is out.</summary>
    private async Task CallAsync(string customId, string body, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            Attempt outcome;
            try
            {
                outcome = await AttemptAsync(customId, body, attempt, cancellationToken);
            }
            finally
            {
                _slots.Release();
            }

            if (outcome.Error is null)
            {
                Interlocked.Increment(ref _succeeded);
                return;
            }

            if (outcome.RetryAfter is not { } wait || attempt == MaxAttempts)
            {
                await Console.Error.WriteLineAsync($"{customId}: {outcome.Error} on attempt {attempt}; not retried.");
                return;
            }

            await Task.Delay(wait, cancellationToken);
            await _slots.WaitAsync(cancellationToken);
        }
    }

    private async Task<Attempt> AttemptAsync(string customId, string body, int attempt, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, _completions) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Add(CustomIdHeader, customId);
        try
        {
            // The whole body is read before SendAsync returns, so a body cut short throws here.
            using var response = await http.SendAsync(request, cancellationToken);
            var status = (int)response.StatusCode;
            if (response.IsSuccessStatusCode)
            {
                return new Attempt(null, null);
            }

            var retry = response.StatusCode == HttpStatusCode.TooManyRequests || status >= 500;
            return new Attempt($"HTTP {status}", retry ? ProviderWait(response) ?? Backoff(attempt) : null);
        }
        catch (HttpRequestException transport)
        {
            return new Attempt(transport.Message, Backoff(attempt));
        }
        catch (TaskCanceledException timeout) when (!cancellationToken.IsCancellationRequested)
        {
            return new Attempt($"no answer within {http.Timeout.TotalSeconds:0} s ({timeout.Message})", Backoff(attempt));
        }
    }

    private static TimeSpan? ProviderWait(HttpResponseMessage response) => response.Headers.RetryAfter switch
    {
        { Delta: { } delta } => delta,
        { Date: { } date } => date > DateTimeOffset.UtcNow ? date - DateTimeOffset.UtcNow : TimeSpan.Zero,
        _ => null,
    };

    private static TimeSpan Backoff(int attempt) =>
        TimeSpan.FromTicks(Math.Min(LongestBackoff.Ticks, FirstBackoff.Ticks << Math.Min(attempt - 1, 16)));

    /// <summary>One request's outcome: <paramref name="Error"/> null on a 2xx; <paramref name="RetryAfter"/> null when it is not worth another attempt.</summary>
    private readonly record struct Attempt(string? Error, TimeSpan? RetryAfter);
}
