using System.Collections.Concurrent;
using System.Text.Json;
using Json.Schema;

namespace Nightshift.Items;

/// <summary>
/// What an item's answer must be, from its request's <c>response_format</c> (<c>json_object</c>: a JSON
/// object; <c>json_schema</c>: its schema) and the batch's <see cref="Batches.BatchOptions.Schema"/>: the
/// answer's <c>choices[0].message.content</c>, parsed as JSON, must satisfy every one that applies.
/// </summary>
internal sealed class AnswerValidator
{
    /// <summary>Schemas by their text, built once: a batch's lines mostly share one.</summary>
    private static readonly ConcurrentDictionary<string, JsonSchema> Built = new(StringComparer.Ordinal);

    private const int MostBuilt = 256;

    private readonly bool _objectOnly;
    private readonly IReadOnlyList<JsonSchema> _schemas;

    private AnswerValidator(bool objectOnly, IReadOnlyList<JsonSchema> schemas)
    {
        _objectOnly = objectOnly;
        _schemas = schemas;
    }

    /// <summary>The validator for a request <paramref name="body"/>, or <c>null</c> when nothing asks for JSON.</summary>
    public static AnswerValidator? For(string body, string? batchSchema)
    {
        // Most requests ask for no JSON: they are not parsed again for it.
        if (batchSchema is null && !body.Contains("\"response_format\"", StringComparison.Ordinal))
        {
            return null;
        }

        List<JsonSchema> schemas = batchSchema is null ? [] : [Build(batchSchema)];
        var objectOnly = false;
        using var request = JsonDocument.Parse(body);
        if (request.RootElement.TryGetProperty("response_format", out var format) && format.ValueKind == JsonValueKind.Object
            && format.TryGetProperty("type", out var type))
        {
            objectOnly = type.ValueEquals("json_object");
            if (type.ValueEquals("json_schema") && SchemaOf(format) is { } schema)
            {
                schemas.Add(Build(schema.GetRawText()));
            }
        }

        return objectOnly || schemas.Count > 0 ? new AnswerValidator(objectOnly, schemas) : null;
    }

    /// <summary>Why <paramref name="schema"/> (a schema's text) is not a JSON Schema, or <c>null</c> when it is one.</summary>
    public static string? SchemaProblem(string schema)
    {
        try
        {
            Build(schema);
            return null;
        }
        catch (Exception invalid) when (invalid is JsonException or JsonSchemaException)
        {
            return invalid.Message;
        }
    }

    /// <summary>The <c>json_schema.schema</c> of a <c>response_format</c>, or <c>null</c> when it has none.</summary>
    public static JsonElement? SchemaOf(JsonElement responseFormat) =>
        responseFormat.TryGetProperty("json_schema", out var named) && named.ValueKind == JsonValueKind.Object
            && named.TryGetProperty("schema", out var schema) ? schema : null;

    /// <summary>Why the completion <paramref name="answer"/> (its whole body) fails validation, or <c>null</c> when it passes.</summary>
    public string? Problem(string answer)
    {
        string? content;
        try
        {
            using var completion = JsonDocument.Parse(answer);
            content = completion.RootElement.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();
        }
        catch (Exception unreadable) when (unreadable is JsonException or KeyNotFoundException or IndexOutOfRangeException or InvalidOperationException)
        {
            return "the answer has no choices[0].message.content string";
        }

        JsonDocument parsed;
        try
        {
            parsed = JsonDocument.Parse(content ?? "");
        }
        catch (JsonException notJson)
        {
            return $"choices[0].message.content is not JSON: {notJson.Message}";
        }

        using (parsed)
        {
            if (_objectOnly && parsed.RootElement.ValueKind != JsonValueKind.Object)
            {
                return "choices[0].message.content is not a JSON object";
            }

            return _schemas.Select(schema => Failure(schema.Evaluate(parsed.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.List })))
                .FirstOrDefault(failure => failure is not null);
        }
    }

    /// <summary>The first error of an evaluation: where in the content, what, and which schema path said so.</summary>
    private static string? Failure(EvaluationResults results)
    {
        if (results.IsValid)
        {
            return null;
        }

        var failed = (results.Details ?? []).Prepend(results).FirstOrDefault(detail => detail.Errors is { Count: > 0 });
        if (failed?.Errors?.First() is not { } error)
        {
            return "the content does not satisfy the schema";
        }

        var at = failed.InstanceLocation.ToString();
        return $"{(at.Length == 0 ? "/" : at)}: {error.Value} (schema {failed.EvaluationPath}/{error.Key})";
    }

    private static JsonSchema Build(string text)
    {
        if (Built.TryGetValue(text, out var known))
        {
            return known;
        }

        if (Built.Count >= MostBuilt)
        {
            Built.Clear();
        }

        using var document = JsonDocument.Parse(text);

        // A registry of its own: the global one would keep every schema, and refuse two with one $id.
        var schema = JsonSchema.Build(document.RootElement.Clone(), new BuildOptions { SchemaRegistry = new SchemaRegistry() });
        return Built[text] = schema;
    }
}
