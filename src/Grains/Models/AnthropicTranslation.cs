using System.Text.Json;
using System.Text.Json.Nodes;

namespace Nightshift.Models;

/// <summary>
/// OpenAI chat bodies to Messages API requests, and Messages answers back to <c>chat.completion</c> bodies.
/// Pure JSON to JSON, so both directions are tested without a server.
/// </summary>
internal static class AnthropicTranslation
{
    /// <summary>
    /// The Messages request for an OpenAI chat body: <c>system</c>/<c>developer</c> messages become the top-level
    /// <c>system</c>; consecutive messages of one role merge (the API wants user and assistant to alternate);
    /// <c>image_url</c> parts become image blocks (a data URL as base64, another URL as a URL source);
    /// <c>max_completion_tokens</c> or <c>max_tokens</c>, else <paramref name="defaultMaxTokens"/>, becomes
    /// <c>max_tokens</c>; <c>temperature</c> (at most 1, Anthropic's maximum), <c>top_p</c>, <c>stop</c> (as
    /// <c>stop_sequences</c>) and <c>user</c> (as <c>metadata.user_id</c>) carry over; the rest is dropped.
    /// Throws <see cref="FormatException"/>, saying what, for a body the API has no counterpart for.
    /// </summary>
    public static JsonObject ToMessagesRequest(string body, string model, int defaultMaxTokens)
    {
        JsonObject chat;
        try
        {
            chat = JsonNode.Parse(body) as JsonObject ?? throw new FormatException("the body is not a JSON object");
        }
        catch (JsonException invalid)
        {
            throw new FormatException($"the body is not JSON: {invalid.Message}");
        }

        if (chat["tools"] is not null || chat["functions"] is not null)
        {
            throw new FormatException("tools and functions are not translated to the Messages API");
        }

        if (chat["n"] is JsonValue n && n.TryGetValue<int>(out var choices) && choices != 1)
        {
            throw new FormatException("the Messages API answers one choice; n must be 1");
        }

        var system = new List<string>();
        var messages = new JsonArray();
        foreach (var message in chat["messages"] as JsonArray ?? throw new FormatException("the body has no messages array"))
        {
            var role = message?["role"]?.GetValue<string>();
            switch (role)
            {
                case "system" or "developer":
                    system.Add(Text(message!["content"]));
                    break;
                case "user" or "assistant":
                    Append(messages, role, Content(message!["content"]));
                    break;
                default:
                    throw new FormatException($"a message of role '{role}' is not translated to the Messages API");
            }
        }

        var request = new JsonObject
        {
            ["model"] = model,
            ["max_tokens"] = Count(chat, "max_completion_tokens") ?? Count(chat, "max_tokens") ?? defaultMaxTokens,
        };
        if (system.Count > 0)
        {
            request["system"] = string.Join("\n\n", system);
        }

        request["messages"] = messages;
        if (chat["temperature"] is JsonValue temperature && temperature.TryGetValue<double>(out var degrees))
        {
            request["temperature"] = Math.Min(degrees, 1.0);
        }

        if (chat["top_p"] is JsonValue topP && topP.TryGetValue<double>(out var nucleus))
        {
            request["top_p"] = nucleus;
        }

        switch (chat["stop"])
        {
            case JsonValue stop when stop.TryGetValue<string>(out var sequence):
                request["stop_sequences"] = new JsonArray(sequence);
                break;
            case JsonArray stops:
                request["stop_sequences"] = stops.DeepClone();
                break;
        }

        if (chat["user"] is JsonValue user && user.TryGetValue<string>(out var userId))
        {
            request["metadata"] = new JsonObject { ["user_id"] = userId };
        }

        return request;
    }

    /// <summary>
    /// The <c>chat.completion</c> body for a Messages answer, its usage (cache reads and writes count as prompt
    /// tokens, as OpenAI counts its cached ones) and its finish reason; <c>null</c> when the answer is no message.
    /// </summary>
    public static (string Body, TokenUsage Usage, string FinishReason)? ToChatCompletion(string answer, DateTimeOffset now)
    {
        JsonObject message;
        try
        {
            if (JsonNode.Parse(answer) is not JsonObject parsed || parsed["content"] is not JsonArray)
            {
                return null;
            }

            message = parsed;
        }
        catch (JsonException)
        {
            return null;
        }

        var text = string.Concat(((JsonArray)message["content"]!)
            .Where(block => block?["type"]?.GetValue<string>() == "text")
            .Select(block => block!["text"]?.GetValue<string>()));
        var usage = message["usage"] as JsonObject;
        var cacheRead = Count(usage, "cache_read_input_tokens") ?? 0;
        var input = (Count(usage, "input_tokens") ?? 0) + (Count(usage, "cache_creation_input_tokens") ?? 0) + cacheRead;
        var output = Count(usage, "output_tokens") ?? 0;
        var finishReason = FinishReason(message["stop_reason"]?.GetValue<string>());
        var completion = new JsonObject
        {
            ["id"] = message["id"]?.DeepClone(),
            ["object"] = "chat.completion",
            ["created"] = now.ToUnixTimeSeconds(),
            ["model"] = message["model"]?.DeepClone(),
            ["choices"] = new JsonArray(new JsonObject
            {
                ["index"] = 0,
                ["message"] = new JsonObject { ["role"] = "assistant", ["content"] = text },
                ["finish_reason"] = finishReason,
            }),
            ["usage"] = new JsonObject
            {
                ["prompt_tokens"] = input,
                ["completion_tokens"] = output,
                ["total_tokens"] = input + output,
                ["prompt_tokens_details"] = new JsonObject { ["cached_tokens"] = cacheRead },
            },
        };
        return (completion.ToJsonString(), new TokenUsage(input, output, cacheRead), finishReason);
    }

    /// <summary>OpenAI's name for why the model stopped: <c>stop</c>, <c>length</c>, <c>tool_calls</c> or <c>content_filter</c>.</summary>
    public static string FinishReason(string? stopReason) => stopReason switch
    {
        "max_tokens" or "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    };

    private static void Append(JsonArray messages, string role, JsonNode content)
    {
        if (messages.Count > 0 && messages[^1]!["role"]!.GetValue<string>() == role)
        {
            var previous = messages[^1]!.AsObject();
            var blocks = Blocks(previous["content"]!);
            foreach (var block in Blocks(content))
            {
                blocks.Add(block!.DeepClone());
            }

            previous["content"] = blocks;
            return;
        }

        messages.Add(new JsonObject { ["role"] = role, ["content"] = content });
    }

    private static JsonArray Blocks(JsonNode content) => content is JsonArray blocks
        ? new JsonArray([.. blocks.Select(block => block?.DeepClone())])
        : new JsonArray(new JsonObject { ["type"] = "text", ["text"] = content.GetValue<string>() });

    /// <summary>A message's content as the Messages API takes it: a string stays one; parts become blocks.</summary>
    private static JsonNode Content(JsonNode? content) => content switch
    {
        JsonValue value when value.TryGetValue<string>(out var text) => text,
        JsonArray parts => new JsonArray([.. parts.Select(Block)]),
        _ => throw new FormatException("a message's content must be a string or an array of parts"),
    };

    private static JsonNode Block(JsonNode? part) => part?["type"]?.GetValue<string>() switch
    {
        "text" => new JsonObject { ["type"] = "text", ["text"] = part["text"]?.GetValue<string>() ?? "" },
        "image_url" => new JsonObject { ["type"] = "image", ["source"] = ImageSource(part["image_url"]?["url"]?.GetValue<string>()) },
        var type => throw new FormatException($"a content part of type '{type}' is not translated to the Messages API"),
    };

    /// <summary><c>data:image/png;base64,…</c> as a base64 source; any other URL as a URL source.</summary>
    private static JsonObject ImageSource(string? url)
    {
        const string Base64Marker = ";base64,";
        if (url is null)
        {
            throw new FormatException("an image_url part has no url");
        }

        var marker = url.IndexOf(Base64Marker, StringComparison.Ordinal);
        if (url.StartsWith("data:", StringComparison.Ordinal) && marker > 0)
        {
            return new JsonObject
            {
                ["type"] = "base64",
                ["media_type"] = url["data:".Length..marker],
                ["data"] = url[(marker + Base64Marker.Length)..],
            };
        }

        return new JsonObject { ["type"] = "url", ["url"] = url };
    }

    /// <summary>A system message's text: its string, or its text parts joined.</summary>
    private static string Text(JsonNode? content) => content switch
    {
        JsonValue value when value.TryGetValue<string>(out var text) => text,
        JsonArray parts => string.Concat(parts.Where(part => part?["type"]?.GetValue<string>() == "text").Select(part => part!["text"]?.GetValue<string>())),
        _ => throw new FormatException("a system message's content must be a string or an array of text parts"),
    };

    private static long? Count(JsonObject? json, string name) =>
        json?[name] is JsonValue value && value.TryGetValue<long>(out var count) ? count : null;
}
