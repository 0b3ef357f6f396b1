using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Nightshift.MockModel;

/// <summary>The mock's HTTP endpoints: OpenAI and Azure OpenAI chat completions, plus its own counters.</summary>
internal static class MockModelApi
{
    public const string CustomIdHeader = "X-Nightshift-Custom-Id";
    public const string NoCustomId = "(none)";

    private const int CompletionTokens = 8;

    public static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static void MapMockModelApi(this IEndpointRouteBuilder endpoints, MockModelOptions options, CallCounter counter)
    {
        endpoints.MapPost("/v1/chat/completions", context => CompleteAsync(context, deployment: null, options, counter));

        // Azure's shape; the api-version query is accepted whatever it is.
        endpoints.MapPost("/openai/deployments/{deployment}/chat/completions",
            context => CompleteAsync(context, context.GetRouteValue("deployment") as string, options, counter));

        endpoints.MapGet("/stats", () => TypedResults.Json(counter.Snapshot(), Json));
        endpoints.MapPost("/stats/reset", NoContent () =>
        {
            counter.Reset();
            return TypedResults.NoContent();
        });
        endpoints.MapGet("/health", () => TypedResults.Ok());
    }

    private static async Task CompleteAsync(HttpContext context, string? deployment, MockModelOptions options, CallCounter counter)
    {
        var aborted = context.RequestAborted;
        var header = context.Request.Headers[CustomIdHeader].ToString();
        var customId = header.Length == 0 ? NoCustomId : header;
        var attempt = counter.Arrive(customId, context.Connection.RemotePort);
        try
        {
            using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
            var body = await reader.ReadToEndAsync(aborted);
            var request = new MockRequest(customId, context.Request.Path.Value ?? "", body, attempt);
            var fault = options.Respond?.Invoke(request);

            var wait = Latency(options) + (fault?.Delay ?? TimeSpan.Zero);
            if (wait > TimeSpan.Zero)
            {
                await Task.Delay(wait, aborted);
            }

            if (fault is not null)
            {
                await WriteAsync(context.Response, fault, aborted);
                return;
            }

            if (!TryReadModel(body, out var model))
            {
                context.Response.StatusCode = StatusCodes.Status400BadRequest;
                await context.Response.WriteAsJsonAsync(new ApiError(new ApiErrorDetail("the request body is not JSON", "invalid_request_error")), Json, aborted);
                return;
            }

            await context.Response.WriteAsJsonAsync(Completion(body, model ?? deployment ?? "mock"), Json, aborted);
        }
        catch (OperationCanceledException) when (aborted.IsCancellationRequested)
        {
            // The client is gone and nobody reads an answer. The call stays counted: it reached the model.
        }
        finally
        {
            counter.Leave();
        }
    }

    private static TimeSpan Latency(MockModelOptions options) =>
        options.LatencyMin + ((options.LatencyMax - options.LatencyMin) * Random.Shared.NextDouble());

    /// <summary>False when the body is not JSON; <paramref name="model"/> is null when it names no model.</summary>
    private static bool TryReadModel(string body, out string? model)
    {
        model = null;
        try
        {
            using var document = JsonDocument.Parse(body);
            if (document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("model", out var named)
                && named.ValueKind == JsonValueKind.String)
            {
                model = named.GetString();
            }

            return true;
        }
        catch (JsonException)
        {
            return false;
        }
    }

    private static ChatCompletion Completion(string body, string model)
    {
        var promptTokens = Math.Max(1, body.Length / 4);
        return new ChatCompletion(
            "chatcmpl-" + Guid.NewGuid().ToString("n"),
            "chat.completion",
            DateTimeOffset.UtcNow.ToUnixTimeSeconds(),
            model,
            [new ChatChoice(0, new ChatMessage("assistant", MockModelServer.ExpectedContent(body)), "stop")],
            new ChatUsage(promptTokens, CompletionTokens, promptTokens + CompletionTokens));
    }

    private static async Task WriteAsync(HttpResponse response, MockResponse answer, CancellationToken cancellationToken)
    {
        response.StatusCode = answer.StatusCode;
        response.ContentType = "application/json";

        // After the default content type, so the hook can replace it.
        foreach (var (name, value) in answer.Headers)
        {
            response.Headers[name] = value;
        }

        if (answer.ResetAfterBytes is not { } cut)
        {
            await response.WriteAsync(answer.Body, cancellationToken);
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
