using System.Globalization;
using System.Text;

namespace Nightshift.MockModel;

/// <summary>
/// Answers a completion request as a rate-limited, faulty provider would, in its <see cref="IProviderDialect"/>:
/// a request of the wrong shape is refused first; then the buckets refuse it at arrival or admit it; an admitted
/// one waits its latency and then gets the <see cref="MockModelOptions.Respond"/> hook's answer, an injected
/// fault, or its completion.
/// </summary>
internal sealed class CompletionEndpoint(MockModelOptions options, CallCounter counter, IProviderDialect dialect)
{
    private readonly RateLimits _limits = new(options);
    private readonly FaultInjector _faults = new(options);

    public async Task HandleAsync(HttpContext context, string? deployment)
    {
        var aborted = context.RequestAborted;
        var header = context.Request.Headers[MockModelApi.CustomIdHeader].ToString();
        var customId = header.Length == 0 ? MockModelApi.NoCustomId : header;
        var attempt = counter.Arrive(customId, context.Connection.RemotePort);
        var left = false;
        try
        {
            using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
            var body = await reader.ReadToEndAsync(aborted);
            if (dialect.Reject(context.Request, body) is { } rejected)
            {
                await WriteAsync(context.Response, rejected, aborted);
                counter.Answered(rejected.StatusCode, whole: true, tokens: 0);
                return;
            }

            var completion = CompletionRequest.Read(body, options.CompletionTokens);
            var model = completion.Model ?? deployment ?? "mock";
            counter.Asked(customId, completion.Temperature, model);

            // As a provider's gateway does: checked at arrival, refused at once, before any latency.
            var admission = _limits.Admit(completion.Tokens);
            dialect.WriteRateLimitHeaders(context.Response.Headers, admission, options.TimeProvider.GetUtcNow());
            if (!admission.Admitted)
            {
                counter.RateLimited();
                await RefuseAsync(context.Response, admission, completion, model, aborted);
                return;
            }

            counter.Admitted(completion.Tokens);

            // Drawn for every admitted request, even one the hook answers, so a seed's sequence of faults
            // does not depend on the hook.
            var fault = _faults.Draw();
            var hookAnswer = options.Respond?.Invoke(new MockRequest(customId, context.Request.Path.Value ?? "", body, attempt));
            if (hookAnswer is not null)
            {
                fault = InjectedFault.None;
            }

            var wait = Latency(customId) + (hookAnswer?.Delay ?? TimeSpan.Zero);
            if (fault == InjectedFault.Hang)
            {
                counter.Injected(fault);
                wait += TimeSpan.FromMilliseconds(options.HangMs);
            }

            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, options.TimeProvider, aborted);
            }

            var (answer, tokens) = hookAnswer is not null ? (hookAnswer, 0) : OwnAnswer(body, completion, model, fault);

            // The call ends as its answer goes out: counted until after the write, a client that already has
            // the answer and calls again could be counted beside it while this handler waits to be scheduled.
            counter.Leave(customId);
            left = true;
            await WriteAsync(context.Response, answer, aborted);

            // A reset before any byte sent no status line.
            if (answer.ResetAfterBytes is not 0)
            {
                counter.Answered(answer.StatusCode, whole: answer.ResetAfterBytes is null, tokens);
            }
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // The client is gone and nobody reads an answer. The call stays counted: it reached the model.
        }
        finally
        {
            if (!left)
            {
                counter.Leave(customId);
            }
        }
    }

    private TimeSpan Latency(string customId) =>
        options.SlowPrefix is { } slow && customId.StartsWith(slow, StringComparison.Ordinal)
            ? options.SlowLatency
            : options.LatencyMin + ((options.LatencyMax - options.LatencyMin) * Random.Shared.NextDouble());

    /// <summary>The mock's own answer to an admitted request, and the tokens its <c>usage</c> reports (0 when it is no completion).</summary>
    private (MockResponse Answer, int Tokens) OwnAnswer(string body, CompletionRequest completion, string model, InjectedFault fault)
    {
        var injected = fault switch
        {
            InjectedFault.TooManyRequests => dialect.Error(StatusCodes.Status429TooManyRequests,
                $"Rate limit reached: the server is busy with other requests. Please try again in {options.RetryAfterSeconds}s.", "rate_limit_error", "rate_limit_exceeded")
                with
                {
                    Headers = RetryAfter(),
                },
            InjectedFault.InternalServerError => dialect.Error(StatusCodes.Status500InternalServerError,
                "The server had an error while processing your request. Sorry about that!", "server_error"),
            InjectedFault.ServiceUnavailable => dialect.Error(StatusCodes.Status503ServiceUnavailable,
                "The server is overloaded or not ready yet.", "server_error", "service_unavailable"),
            InjectedFault.Overloaded => dialect.Error(MockModelApi.Overloaded, "Overloaded", "overloaded_error") with { Headers = RetryAfter() },
            _ => null,
        };
        if (injected is not null)
        {
            counter.Injected(fault);
            return (injected, 0);
        }

        if (!completion.IsJson)
        {
            return (dialect.Error(StatusCodes.Status400BadRequest, "the request body is not JSON", "invalid_request_error"), 0);
        }

        var content = options.JsonModels.Contains(model) ? MockModelServer.ExpectedJsonContent(body) : MockModelServer.ExpectedContent(body);
        var answer = new MockResponse(StatusCodes.Status200OK, dialect.Answer(body, content, completion, model, options.TimeProvider.GetUtcNow()));
        if (fault == InjectedFault.Truncate)
        {
            counter.Injected(fault);
            answer = answer with { ResetAfterBytes = Encoding.UTF8.GetByteCount(answer.Body) / 2 };
        }

        return (answer, completion.Tokens);
    }

    /// <summary>The <c>Retry-After</c> of an injected 429 or 529 (OpenAI and Anthropic send the same header).</summary>
    private Dictionary<string, string> RetryAfter() => new() { ["Retry-After"] = options.RetryAfterSeconds.ToString(CultureInfo.InvariantCulture) };

    private async Task RefuseAsync(HttpResponse response, Admission admission, CompletionRequest completion, string model, CancellationToken cancellationToken)
    {
        dialect.WriteRetryAfter(response.Headers, admission.RetryAfter);
        var (limit, unit, requested) = admission.RequestsExhausted
            ? (admission.Requests!.LimitPerMinute, "requests per min (RPM)", 1)
            : (admission.Tokens!.LimitPerMinute, "tokens per min (TPM)", completion.Tokens);
        var message = string.Create(CultureInfo.InvariantCulture,
            $"Rate limit reached for {model} on {unit}: Limit {limit}, Requested {requested}. Please try again in {RateLimitHeaders.GoDuration(admission.RetryAfter)}.");
        var answer = dialect.Error(StatusCodes.Status429TooManyRequests, message, "rate_limit_error", "rate_limit_exceeded");
        await WriteAsync(response, answer, cancellationToken);
        counter.Answered(answer.StatusCode, whole: true, tokens: 0);
    }

    private static async Task WriteAsync(HttpResponse response, MockResponse answer, CancellationToken cancellationToken)
    {
        response.StatusCode = answer.StatusCode;
        response.ContentType = "application/json";

        // After the default content type and the rate-limit headers, so the hook can replace them.
        foreach (var (name, value) in answer.Headers)
        {
            response.Headers[name] = value;
        }

        if (answer.ResetAfterBytes is not { } cut)
        {
            await response.WriteAsync(answer.Body, cancellationToken);

            // Sent now, so the success is counted at the moment the client can have it.
            await response.CompleteAsync();
            return;
        }

        var bytes = Encoding.UTF8.GetBytes(answer.Body);
        if (cut > 0)
        {
            response.ContentLength = bytes.Length;
            await response.Body.WriteAsync(bytes.AsMemory(0, Math.Min(cut, bytes.Length)), cancellationToken);
            await response.Body.FlushAsync(cancellationToken);
        }

        response.HttpContext.Abort();
    }
}
