using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Nightshift.MockModel;

/// <summary>
/// Anthropic's Messages API (<c>POST /v1/messages</c>): the key in <c>x-api-key</c>, an <c>anthropic-version</c>,
/// <c>max_tokens</c> required, <c>system</c> top-level and user and assistant turns alternating, starting with the
/// user; <c>anthropic-ratelimit-*</c> headers with RFC 3339 resets; answers and errors in the Messages shapes.
/// </summary>
internal sealed class AnthropicDialect : IProviderDialect
{
    public MockResponse? Reject(HttpRequest request, string body)
    {
        if (string.IsNullOrEmpty(request.Headers["x-api-key"]))
        {
            return Error(StatusCodes.Status401Unauthorized, "x-api-key header is required", "authentication_error");
        }

        if (string.IsNullOrEmpty(request.Headers["anthropic-version"]))
        {
            return Error(StatusCodes.Status400BadRequest, "anthropic-version: header is required", "invalid_request_error");
        }

        JsonNode? parsed;
        try
        {
            parsed = JsonNode.Parse(body);
        }
        catch (JsonException)
        {
            return Invalid("the request body is not JSON");
        }

        return Problem(parsed as JsonObject) is { } problem ? Invalid(problem) : null;
    }

    public void WriteRateLimitHeaders(IHeaderDictionary headers, Admission admission, DateTimeOffset now)
    {
        Write(headers, "requests", admission.Requests, now);
        Write(headers, "tokens", admission.Tokens, now);
    }

    /// <summary><c>retry-after</c> in whole seconds, rounded up, at least 1.</summary>
    public void WriteRetryAfter(IHeaderDictionary headers, TimeSpan wait) =>
        headers.RetryAfter = Math.Max(1, (long)Math.Ceiling(wait.TotalSeconds)).ToString(CultureInfo.InvariantCulture);

    public MockResponse Error(int status, string message, string type, string? code = null) => new(status, new JsonObject
    {
        ["type"] = "error",
        ["error"] = new JsonObject { ["type"] = type == "server_error" ? "api_error" : type, ["message"] = message },
    }.ToJsonString());

    public string Answer(string body, string content, CompletionRequest completion, string model, DateTimeOffset now)
    {
        var maximum = (JsonNode.Parse(body) as JsonObject)?["max_tokens"]?.GetValue<long>();
        return new JsonObject
        {
            ["id"] = "msg_" + Guid.NewGuid().ToString("n"),
            ["type"] = "message",
            ["role"] = "assistant",
            ["model"] = model,
            ["content"] = new JsonArray(new JsonObject { ["type"] = "text", ["text"] = content }),
            ["stop_reason"] = completion.CompletionTokens == maximum ? "max_tokens" : "end_turn",
            ["stop_sequence"] = null,
            ["usage"] = new JsonObject { ["input_tokens"] = completion.PromptTokens, ["output_tokens"] = completion.CompletionTokens },
        }.ToJsonString();
    }

    private MockResponse Invalid(string message) => Error(StatusCodes.Status400BadRequest, message, "invalid_request_error");

    /// <summary>What is wrong with the body, as the API words it; <c>null</c> when nothing is.</summary>
    private static string? Problem(JsonObject? request)
    {
        if (request is null)
        {
            return "the request body must be a JSON object";
        }

        if (request["model"] is not JsonValue model || !model.TryGetValue<string>(out _))
        {
            return "model: Field required";
        }

        if (request["max_tokens"] is not JsonValue maximum || !maximum.TryGetValue<long>(out var tokens) || tokens < 1)
        {
            return "max_tokens: Field required (a whole number, at least 1)";
        }

        if (request["system"] is { } system && !IsText(system))
        {
            return "system: must be a string or an array of text blocks";
        }

        if (request["messages"] is not JsonArray { Count: > 0 } messages)
        {
            return "messages: at least one message is required";
        }

        string? previous = null;
        for (var i = 0; i < messages.Count; i++)
        {
            var role = messages[i]?["role"] is JsonValue value && value.TryGetValue<string>(out var named) ? named : null;
            if (role is not ("user" or "assistant"))
            {
                return $"messages.{i}.role: Unexpected role \"{role}\". The Messages API accepts a top-level `system` parameter, not \"system\" as an input message role; roles are \"user\" and \"assistant\"";
            }

            if (previous is null && role != "user")
            {
                return "messages.0.role: the first message must use the \"user\" role";
            }

            if (role == previous)
            {
                return $"messages.{i}: roles must alternate between \"user\" and \"assistant\"";
            }

            if (ContentProblem(messages[i]!["content"]) is { } problem)
            {
                return $"messages.{i}.content: {problem}";
            }

            previous = role;
        }

        return null;
    }

    private static string? ContentProblem(JsonNode? content)
    {
        if (content is JsonValue text && text.TryGetValue<string>(out _))
        {
            return null;
        }

        if (content is not JsonArray blocks)
        {
            return "must be a string or an array of content blocks";
        }

        foreach (var block in blocks)
        {
            switch (block?["type"]?.GetValue<string>())
            {
                case "text" when block["text"] is JsonValue:
                    break;
                case "image" when block["source"] is JsonObject source && IsImageSource(source):
                    break;
                case var type:
                    return $"a block of type '{type}' is not a text block or an image block with a base64 or url source";
            }
        }

        return null;
    }

    private static bool IsImageSource(JsonObject source) => source["type"]?.GetValue<string>() switch
    {
        "base64" => source["media_type"] is JsonValue && source["data"] is JsonValue,
        "url" => source["url"] is JsonValue,
        _ => false,
    };

    private static bool IsText(JsonNode system) =>
        system is JsonValue value && value.TryGetValue<string>(out _)
        || system is JsonArray blocks && blocks.All(block => block?["type"]?.GetValue<string>() == "text");

    private static void Write(IHeaderDictionary headers, string unit, BucketState? bucket, DateTimeOffset now)
    {
        if (bucket is null)
        {
            return;
        }

        headers[$"anthropic-ratelimit-{unit}-limit"] = bucket.LimitPerMinute.ToString(CultureInfo.InvariantCulture);
        headers[$"anthropic-ratelimit-{unit}-remaining"] = bucket.Remaining.ToString(CultureInfo.InvariantCulture);

        // Rounded up to the second, as the API writes it: a client that waits until then finds the bucket refilled.
        var full = now + bucket.UntilFull;
        var reset = new DateTimeOffset(full.Ticks - (full.Ticks % TimeSpan.TicksPerSecond), TimeSpan.Zero);
        headers[$"anthropic-ratelimit-{unit}-reset"] = (reset < full ? reset.AddSeconds(1) : reset).ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
    }
}
