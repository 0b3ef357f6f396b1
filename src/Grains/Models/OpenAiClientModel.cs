using System.ClientModel;
using System.ClientModel.Primitives;
using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using Azure.Identity;
using OpenAI.Chat;

namespace Nightshift.Models;

/// <summary>
/// Chat completions through the OpenAI .NET client: any OpenAI-compatible endpoint, or Azure OpenAI
/// through <c>Azure.AI.OpenAI</c>'s client of the same shape. The client's pipeline has its retries
/// switched off, so one call is exactly one HTTP request: Nightshift owns retrying. The JSONL line's
/// <c>body</c> goes out through the protocol method as it is (only <c>model</c> set to the pool's
/// model or deployment), and the response body is kept as the provider sent it.
/// </summary>
public sealed class OpenAiClientModel(ChatClient client, string model) : IChatModel
{
    /// <summary>Carries the item's custom_id, so an endpoint (or a proxy, or the test mock) can tell calls apart.</summary>
    public const string CustomIdHeader = "X-Nightshift-Custom-Id";

    private const string ContentFilter = "content_filter";

    public async Task<ModelCallResult> CompleteAsync(ModelRequest request, CancellationToken cancellationToken)
    {
        // NoThrow: a non-2xx answer is a result to classify, not an exception; the attempt's timeout,
        // the batch's cancellation and the silo's stop all arrive through this token and abort the request.
        var options = new RequestOptions { CancellationToken = cancellationToken, ErrorOptions = ClientErrorBehaviors.NoThrow };
        options.AddHeader(CustomIdHeader, request.CustomId);
        using var content = BinaryContent.Create(BinaryData.FromString(WithModel(request.Body, model)));
        PipelineResponse response;
        try
        {
            response = (await client.CompleteChatAsync(content, options)).GetRawResponse();
        }
        catch (ClientResultException transport) when (transport.Status == 0)
        {
            // No answer at all: the connection failed or the body could not be read to its end.
            return ModelCallResult.Network(transport.InnerException?.Message ?? transport.Message);
        }
        catch (AuthenticationFailedException signIn)
        {
            // Entra ID found no identity or was refused: nothing was sent, but like a 401 it would
            // refuse every item, so it is reported as one and pauses the pool with the reason.
            return ModelCallResult.Http(401, null, $"Entra ID could not sign in: {signIn.Message}");
        }

        var status = response.Status;
        var body = response.Content.ToString();
        var result = status is >= 200 and < 300
            ? ReadCompletion(status, body)
            : ModelCallResult.Http(status, body, $"HTTP {status}: {ErrorMessage(body) ?? response.ReasonPhrase}", ProviderWait(response.Headers));
        return result with { Limits = RateLimitHeaders.Read(response.Headers) };
    }

    /// <summary>No retries, no pipeline timeout, and the endpoint host's shared pooled client as transport.</summary>
    internal static T WithoutRetries<T>(T options, HttpClient client)
        where T : ClientPipelineOptions
    {
        options.RetryPolicy = new ClientRetryPolicy(maxRetries: 0);
        options.NetworkTimeout = Timeout.InfiniteTimeSpan;
        options.Transport = new HttpClientPipelineTransport(client);
        return options;
    }

    private static string WithModel(string body, string model)
    {
        var json = JsonNode.Parse(body)!.AsObject();
        json["model"] = model;
        return json.ToJsonString();
    }

    private static ModelCallResult ReadCompletion(int status, string body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("choices", out var choices) || choices.ValueKind != JsonValueKind.Array)
            {
                return NotACompletion(status);
            }

            var usage = Usage(root);
            return choices.GetArrayLength() > 0 && choices.EnumerateArray().All(IsFiltered)
                ? ModelCallResult.ContentFiltered(body, usage, "the provider's content filter stopped the completion (finish_reason 'content_filter')")
                : ModelCallResult.Success(body, usage);
        }
        catch (JsonException)
        {
            return NotACompletion(status);
        }

        static ModelCallResult NotACompletion(int status) =>
            ModelCallResult.Network($"HTTP {status} with a body that is not a chat completion (truncated or malformed)");

        static bool IsFiltered(JsonElement choice) =>
            choice.ValueKind == JsonValueKind.Object
            && choice.TryGetProperty("finish_reason", out var reason)
            && reason.ValueKind == JsonValueKind.String
            && reason.ValueEquals(ContentFilter);
    }

    /// <summary><c>usage.prompt_tokens</c>, <c>completion_tokens</c> and <c>prompt_tokens_details.cached_tokens</c>; zero where missing.</summary>
    private static TokenUsage Usage(JsonElement root)
    {
        if (!root.TryGetProperty("usage", out var counts) || counts.ValueKind != JsonValueKind.Object)
        {
            return default;
        }

        var cached = counts.TryGetProperty("prompt_tokens_details", out var details) && details.ValueKind == JsonValueKind.Object
            ? Count(details, "cached_tokens")
            : 0;
        return new TokenUsage(Count(counts, "prompt_tokens"), Count(counts, "completion_tokens"), cached);

        static long Count(JsonElement counts, string name) =>
            counts.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var count) ? count : 0;
    }

    internal static string? ErrorMessage(string body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            return document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("error", out var error)
                && error.ValueKind == JsonValueKind.Object
                && error.TryGetProperty("message", out var text)
                && text.ValueKind == JsonValueKind.String
                ? text.GetString()
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>
    /// The provider's wait, most precise first: <c>retry-after-ms</c>, then <c>Retry-After</c> (seconds
    /// or an HTTP date), then the longer of <c>x-ratelimit-reset-requests</c> and <c>-tokens</c>.
    /// </summary>
    internal static TimeSpan? ProviderWait(PipelineResponseHeaders headers)
    {
        if (headers.TryGetValue("retry-after-ms", out var milliseconds)
            && double.TryParse(milliseconds, NumberStyles.Float, CultureInfo.InvariantCulture, out var ms) && ms >= 0)
        {
            return TimeSpan.FromMilliseconds(ms);
        }

        if (headers.TryGetValue("Retry-After", out var retryAfter))
        {
            if (double.TryParse(retryAfter, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && seconds >= 0)
            {
                return TimeSpan.FromSeconds(seconds);
            }

            if (DateTimeOffset.TryParse(retryAfter, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var date))
            {
                var wait = date - DateTimeOffset.UtcNow;
                return wait > TimeSpan.Zero ? wait : TimeSpan.Zero;
            }
        }

        TimeSpan? reset = null;
        foreach (var name in (ReadOnlySpan<string>)["x-ratelimit-reset-requests", "x-ratelimit-reset-tokens"])
        {
            if (headers.TryGetValue(name, out var value) && ResetDuration.TryParse(value, out var duration) && (reset is null || duration > reset))
            {
                reset = duration;
            }
        }

        return reset;
    }
}
