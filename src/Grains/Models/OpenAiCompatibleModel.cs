using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Nightshift.Models;

/// <summary>
/// An endpoint that speaks OpenAI's chat completions API. One call is exactly one HTTP request: no
/// retries here, Nightshift owns retrying. The request body is the JSONL line's <c>body</c>, passed
/// through with only <c>model</c> set to the pool's model.
/// </summary>
public sealed class OpenAiCompatibleModel(HttpClient http, Uri completionsUri, string model, string? apiKey) : IChatModel
{
    /// <summary>Carries the item's custom_id, so an endpoint (or a proxy, or the test mock) can tell calls apart.</summary>
    public const string CustomIdHeader = "X-Nightshift-Custom-Id";

    public async Task<ModelCallResult> CompleteAsync(ModelRequest request, CancellationToken cancellationToken)
    {
        using var message = new HttpRequestMessage(HttpMethod.Post, completionsUri)
        {
            Content = new StringContent(WithModel(request.Body, model), Encoding.UTF8, "application/json"),
        };
        message.Headers.Add(CustomIdHeader, request.CustomId);
        if (apiKey is not null)
        {
            message.Headers.Authorization = new AuthenticationHeaderValue("Bearer", apiKey);
        }

        using var response = await http.SendAsync(message, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        var body = await response.Content.ReadAsStringAsync(cancellationToken);
        var status = (int)response.StatusCode;
        if (response.IsSuccessStatusCode)
        {
            return TryReadUsage(body, out var usage)
                ? ModelCallResult.Success(body, usage)
                : ModelCallResult.Network($"HTTP {status} with a body that is not a chat completion (truncated or malformed)");
        }

        return ModelCallResult.Http(status, body, $"HTTP {status}: {ErrorMessage(body) ?? response.ReasonPhrase}", RetryAfter(response));
    }

    private static string WithModel(string body, string model)
    {
        var json = JsonNode.Parse(body)!.AsObject();
        json["model"] = model;
        return json.ToJsonString();
    }

    private static bool TryReadUsage(string body, out TokenUsage usage)
    {
        usage = default;
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object || !root.TryGetProperty("choices", out _))
            {
                return false;
            }

            if (root.TryGetProperty("usage", out var counts) && counts.ValueKind == JsonValueKind.Object)
            {
                usage = new TokenUsage(Count(counts, "prompt_tokens"), Count(counts, "completion_tokens"));
            }

            return true;
        }
        catch (JsonException)
        {
            return false;
        }

        static long Count(JsonElement counts, string name) =>
            counts.TryGetProperty(name, out var value) && value.TryGetInt64(out var count) ? count : 0;
    }

    private static string? ErrorMessage(string body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            return document.RootElement.ValueKind == JsonValueKind.Object
                && document.RootElement.TryGetProperty("error", out var error)
                && error.ValueKind == JsonValueKind.Object
                && error.TryGetProperty("message", out var text)
                ? text.GetString()
                : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The provider's wait: <c>retry-after-ms</c>, else <c>Retry-After</c> in seconds or as a date.</summary>
    private static TimeSpan? RetryAfter(HttpResponseMessage response)
    {
        if (response.Headers.TryGetValues("retry-after-ms", out var milliseconds)
            && double.TryParse(milliseconds.First(), NumberStyles.Float, CultureInfo.InvariantCulture, out var ms))
        {
            return TimeSpan.FromMilliseconds(ms);
        }

        return response.Headers.RetryAfter switch
        {
            { Delta: { } delta } => delta,
            { Date: { } date } => date - DateTimeOffset.UtcNow,
            _ => null,
        };
    }
}
