using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.ML.Tokenizers;

namespace Nightshift.Models;

/// <summary>
/// Estimates a chat call's tokens before it starts, for the pool's token budget: the prompt counted as
/// OpenAI counts chat messages (3 per message, its role and content, 3 to prime the reply) with the
/// model's own tokenizer (o200k for the GPT-4o / 4.1 / 5 and o-series, cl100k for GPT-4 and 3.5, from
/// the tokenizer data packages; nothing is downloaded), plus the completion's ceiling:
/// <c>max_completion_tokens</c>, else <c>max_tokens</c>, else the pool's default. A model no tokenizer
/// is known for is counted at four characters a token.
/// </summary>
public static class TokenEstimate
{
    private const int TokensPerMessage = 3;
    private const int ReplyPriming = 3;

    /// <summary>What an image part counts: the price of a low-detail image, as the size is not known before the call.</summary>
    private const int TokensPerImage = 85;

    private static readonly ConcurrentDictionary<string, Tokenizer?> Tokenizers = new(StringComparer.OrdinalIgnoreCase);

    public static long For(string body, string model, int defaultMaxTokens)
    {
        var tokenizer = Tokenizers.GetOrAdd(model, Create);
        try
        {
            using var document = JsonDocument.Parse(body);
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return Count(tokenizer, body) + defaultMaxTokens;
            }

            var prompt = root.TryGetProperty("messages", out var messages) && messages.ValueKind == JsonValueKind.Array
                ? Messages(tokenizer, messages)
                : Count(tokenizer, body);
            return prompt + CompletionCeiling(root, defaultMaxTokens);
        }
        catch (JsonException)
        {
            return Count(tokenizer, body) + defaultMaxTokens;
        }
    }

    private static long Messages(Tokenizer? tokenizer, JsonElement messages)
    {
        long tokens = ReplyPriming;
        foreach (var message in messages.EnumerateArray())
        {
            tokens += TokensPerMessage;
            if (message.ValueKind != JsonValueKind.Object)
            {
                continue;
            }

            foreach (var field in message.EnumerateObject())
            {
                tokens += field.Value.ValueKind switch
                {
                    JsonValueKind.String => Count(tokenizer, field.Value.GetString()!) + (field.NameEquals("name") ? 1 : 0),
                    JsonValueKind.Array when field.NameEquals("content") => Parts(tokenizer, field.Value),
                    JsonValueKind.Array or JsonValueKind.Object => Count(tokenizer, field.Value.GetRawText()),
                    _ => 0,
                };
            }
        }

        return tokens;
    }

    private static long Parts(Tokenizer? tokenizer, JsonElement parts)
    {
        long tokens = 0;
        foreach (var part in parts.EnumerateArray())
        {
            if (part.ValueKind != JsonValueKind.Object || !part.TryGetProperty("type", out var type))
            {
                continue;
            }

            if (type.ValueEquals("text") && part.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String)
            {
                tokens += Count(tokenizer, text.GetString()!);
            }
            else if (type.ValueEquals("image_url"))
            {
                tokens += TokensPerImage;
            }
        }

        return tokens;
    }

    private static long CompletionCeiling(JsonElement root, int defaultMaxTokens)
    {
        foreach (var name in (ReadOnlySpan<string>)["max_completion_tokens", "max_tokens"])
        {
            if (root.TryGetProperty(name, out var ceiling) && ceiling.ValueKind == JsonValueKind.Number && ceiling.TryGetInt64(out var tokens) && tokens >= 0)
            {
                return tokens;
            }
        }

        return defaultMaxTokens;
    }

    private static long Count(Tokenizer? tokenizer, string text) =>
        tokenizer?.CountTokens(text) ?? (text.Length + 3) / 4;

    private static Tokenizer? Create(string model)
    {
        try
        {
            return TiktokenTokenizer.CreateForModel(model);
        }
        catch (Exception unavailable) when (unavailable is NotSupportedException or ArgumentException or InvalidOperationException or IOException)
        {
            // An unknown model, or one whose encoding's data package is not shipped (p50k, r50k): the
            // estimate then counts characters, and the reconcile with the usage corrects it.
            return null;
        }
    }
}
