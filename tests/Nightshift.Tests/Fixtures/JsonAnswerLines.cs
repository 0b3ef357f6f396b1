using System.Text.Json;

namespace Nightshift.Tests.Fixtures;

/// <summary>Input lines whose <c>response_format</c> asks for <see cref="Schema"/>, which the mock's <c>--json-models</c> answer and its other models do not.</summary>
public static class JsonAnswerLines
{
    /// <summary>What the mock's JSON models answer: <c>{"answer": "…"}</c>.</summary>
    public const string Schema = """{"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}""";

    /// <summary><paramref name="count"/> lines, custom ids <c>{prefix}-0</c>, <c>{prefix}-1</c>, …, each asking for <see cref="Schema"/>.</summary>
    public static string Lines(string prefix, int count) => string.Concat(Enumerable.Range(0, count).Select(i => JsonSerializer.Serialize(new
    {
        custom_id = $"{prefix}-{i}",
        body = new
        {
            model = "any",
            messages = new[] { new { role = "user", content = $"prompt {prefix} {i}" } },
            response_format = new { type = "json_schema", json_schema = new { name = "answer", schema = JsonDocument.Parse(Schema).RootElement } },
        },
    }) + "\n"));
}
