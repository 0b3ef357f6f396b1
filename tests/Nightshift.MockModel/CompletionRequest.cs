using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Nightshift.MockModel;

/// <summary>What the mock reads from a completion request's body: the model it names and what the request costs in tokens.</summary>
/// <param name="IsJson">False when the body is not JSON; the answer is then a 400, but the request still costs its tokens.</param>
/// <param name="Model">The body's <c>model</c>, or null when it names none.</param>
/// <param name="PromptTokens">The prompt tokens its <c>usage</c> reports.</param>
/// <param name="CompletionTokens">The completion tokens its <c>usage</c> reports.</param>
/// <param name="Temperature">The body's <c>temperature</c>, or null when it sets none.</param>
internal sealed record CompletionRequest(bool IsJson, string? Model, int PromptTokens, int CompletionTokens, double? Temperature = null)
{
    // OpenAI's way of counting a chat prompt (the cookbook's num_tokens_from_messages for gpt-4o).
    private const int TokensPerMessage = 3;
    private const int TokensPerName = 1;
    private const int ReplyPriming = 3;
    private const int TokensPerImage = 85;

    // Loading the o200k vocabulary takes a moment, so it happens once per process; reads are thread-safe.
    private static readonly Lazy<TiktokenTokenizer> Tokenizer = new(() => TiktokenTokenizer.CreateForModel("gpt-4o"));

    /// <summary>What the request costs the token bucket: the tokens its <c>usage</c> reports.</summary>
    public int Tokens => PromptTokens + CompletionTokens;

    /// <summary>Loads the tokenizer now, so the first request is not slowed down by it.</summary>
    public static void LoadTokenizer() => _ = Tokenizer.Value;

    /// <summary>Reads <paramref name="body"/>; <paramref name="completionTokens"/> is what the mock answers when the body sets no lower maximum.</summary>
    public static CompletionRequest Read(string body, int completionTokens)
    {
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body);
        }
        catch (JsonException)
        {
            return new CompletionRequest(false, null, EstimatedTokens(body), completionTokens);
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return new CompletionRequest(true, null, EstimatedTokens(body), completionTokens);
            }

            var model = root.TryGetProperty("model", out var named) && named.ValueKind == JsonValueKind.String ? named.GetString() : null;
            var prompt = root.TryGetProperty("messages", out var messages) && messages.ValueKind == JsonValueKind.Array
                ? MessageTokens(messages) + SystemTokens(root)
                : EstimatedTokens(body);
            var maximum = Maximum(root, "max_completion_tokens") ?? Maximum(root, "max_tokens");
            double? temperature = root.TryGetProperty("temperature", out var set) && set.ValueKind == JsonValueKind.Number ? set.GetDouble() : null;
            return new CompletionRequest(true, model, prompt, maximum is { } cap ? (int)Math.Min(completionTokens, cap) : completionTokens, temperature);
        }
    }

    private static int EstimatedTokens(string body) => Math.Max(1, body.Length / 4);

    private static int MessageTokens(JsonElement messages)
    {
        var tokens = ReplyPriming;
        foreach (var message in messages.EnumerateArray())
        {
            tokens += TokensPerMessage;
            if (message.ValueKind != JsonValueKind.Object)
            {
                continue;
            }

            tokens += TextTokens(message, "role") + ContentTokens(message);
            if (message.TryGetProperty("name", out _))
            {
                // As the cookbook does: the name's own tokens, plus one for having a name.
                tokens += TokensPerName + TextTokens(message, "name");
            }
        }

        return tokens;
    }

    private static int ContentTokens(JsonElement message)
    {
        if (!message.TryGetProperty("content", out var content) || content.ValueKind != JsonValueKind.Array)
        {
            return TextTokens(message, "content");
        }

        var tokens = 0;
        foreach (var part in content.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type))
            {
                continue;
            }

            if (type.ValueEquals("text"))
            {
                tokens += TextTokens(part, "text");
            }
            else if (type.ValueEquals("image_url") || type.ValueEquals("image"))
            {
                tokens += TokensPerImage;
            }
        }

        return tokens;
    }

    /// <summary>A Messages API body's top-level <c>system</c> (none in an OpenAI body, which keeps it among the messages).</summary>
    private static int SystemTokens(JsonElement root) => root.TryGetProperty("system", out var system) && system.ValueKind == JsonValueKind.Array
        ? system.EnumerateArray().Sum(block => block.ValueKind == JsonValueKind.Object ? TextTokens(block, "text") : 0)
        : TextTokens(root, "system");

    private static int TextTokens(JsonElement element, string property) =>
        element.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String
            ? Tokenizer.Value.CountTokens(value.GetString()!)
            : 0;

    private static long? Maximum(JsonElement root, string property) =>
        root.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var maximum)
            ? Math.Max(0, maximum)
            : null;
}
