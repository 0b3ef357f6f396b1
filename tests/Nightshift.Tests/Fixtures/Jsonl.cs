using System.Text;
using System.Text.Json;

namespace Nightshift.Tests.Fixtures;

/// <summary>Builds OpenAI Batch JSONL input for tests.</summary>
public static class Jsonl
{
    public static string Line(string customId, string prompt) => JsonSerializer.Serialize(new
    {
        custom_id = customId,
        method = "POST",
        url = "/v1/chat/completions",
        body = new { model = "gpt-4o-mini", messages = new[] { new { role = "user", content = prompt } } },
    });

    public static string Lines(int count, string prefix = "item") =>
        string.Concat(Enumerable.Range(0, count).Select(i => Line($"{prefix}-{i}", $"prompt {prefix} {i}") + "\n"));

    public static MemoryStream Stream(string text) => new(Encoding.UTF8.GetBytes(text));

    /// <summary>The <c>body</c> of a line exactly as Nightshift stores and forwards it.</summary>
    public static string Body(string line) => JsonDocument.Parse(line).RootElement.GetProperty("body").GetRawText();
}
