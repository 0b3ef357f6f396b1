using System.Buffers;
using System.IO.Pipelines;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Unicode;
using Nightshift.Items;
using Nightshift.Storage;

namespace Nightshift.Submission;

/// <summary>One line of input: either a valid item or the problem with the line.</summary>
public readonly record struct ParsedLine(ItemRequest? Item, LineError? Error);

/// <summary>
/// Reads OpenAI Batch JSONL (<c>custom_id</c>, <c>method</c>, <c>url</c>, <c>body</c>) from a stream one
/// line at a time, so input of any size is never held whole; an oversized line is skipped without
/// being buffered past the limit.
/// </summary>
public sealed class JsonlBatchReader(SubmissionOptions options)
{
    /// <summary>The <c>url</c> values accepted: the OpenAI form and the Azure OpenAI form.</summary>
    public static readonly IReadOnlyList<string> SupportedUrls = ["/v1/chat/completions", "/chat/completions"];

    public async IAsyncEnumerable<ParsedLine> ReadAsync(Stream input, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var reader = PipeReader.Create(input, new StreamPipeReaderOptions(bufferSize: 64 * 1024, leaveOpen: true));
        long line = 0;
        var skippingOversized = false;
        while (true)
        {
            var read = await reader.ReadAsync(cancellationToken);
            var buffer = read.Buffer;
            while (TryTakeLine(ref buffer, out var lineBytes))
            {
                line++;
                if (skippingOversized)
                {
                    skippingOversized = false;
                    yield return Oversized(line);
                    continue;
                }

                yield return Parse(line, lineBytes);
            }

            if (!skippingOversized && buffer.Length > options.MaxLineBytes)
            {
                skippingOversized = true;
            }

            if (skippingOversized)
            {
                reader.AdvanceTo(buffer.End);
            }
            else
            {
                reader.AdvanceTo(buffer.Start, buffer.End);
            }

            if (read.IsCompleted)
            {
                if (skippingOversized)
                {
                    yield return Oversized(line + 1);
                    line++;
                }
                else if (!buffer.IsEmpty)
                {
                    line++;
                    yield return Parse(line, buffer);
                }

                break;
            }
        }

        await reader.CompleteAsync();
        if (line == 0)
        {
            yield return new ParsedLine(null, new LineError(1, null, "the input is empty: a batch needs at least one JSONL line"));
        }
    }

    private static bool TryTakeLine(ref ReadOnlySequence<byte> buffer, out ReadOnlySequence<byte> line)
    {
        var newline = buffer.PositionOf((byte)'\n');
        if (newline is null)
        {
            line = default;
            return false;
        }

        line = buffer.Slice(0, newline.Value);
        buffer = buffer.Slice(buffer.GetPosition(1, newline.Value));
        return true;
    }

    private ParsedLine Oversized(long line) =>
        Fail(line, null, $"the line is longer than the limit of {options.MaxLineBytes} bytes (Nightshift:Submission:MaxLineBytes)");

    private ParsedLine Parse(long line, ReadOnlySequence<byte> sequence)
    {
        if (sequence.Length > options.MaxLineBytes)
        {
            return Oversized(line);
        }

        var bytes = sequence.IsSingleSegment ? sequence.FirstSpan : sequence.ToArray();
        if (!bytes.IsEmpty && bytes[^1] == (byte)'\r')
        {
            bytes = bytes[..^1];
        }

        if (bytes.Trim(" \t"u8).IsEmpty)
        {
            return Fail(line, null, "blank line: every line must be one JSON object");
        }

        if (!Utf8.IsValid(bytes))
        {
            return Fail(line, null, "the line is not valid UTF-8");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(bytes.ToArray());
        }
        catch (JsonException malformed)
        {
            return Fail(line, null, $"malformed JSON: {malformed.Message}");
        }

        using (document)
        {
            return Validate(line, document.RootElement);
        }
    }

    private ParsedLine Validate(long line, JsonElement root)
    {
        if (root.ValueKind != JsonValueKind.Object)
        {
            return Fail(line, null, $"expected a JSON object, found {Describe(root.ValueKind)}");
        }

        if (!root.TryGetProperty("custom_id", out var customIdElement))
        {
            return Fail(line, "custom_id", "missing");
        }

        if (customIdElement.ValueKind != JsonValueKind.String)
        {
            return Fail(line, "custom_id", $"must be a string, found {Describe(customIdElement.ValueKind)}");
        }

        if (Text(customIdElement) is not { } customId)
        {
            return Fail(line, "custom_id", "not valid text: it escapes a lone UTF-16 surrogate");
        }

        if (customId.Contains('\0', StringComparison.Ordinal))
        {
            return Fail(line, "custom_id", "must not contain the NUL character (\\u0000)");
        }

        if (customId.Length == 0)
        {
            return Fail(line, "custom_id", "must not be empty");
        }

        if (customId.Length > options.MaxCustomIdLength)
        {
            return Fail(line, "custom_id", $"longer than {options.MaxCustomIdLength} characters");
        }

        var method = "POST";
        if (root.TryGetProperty("method", out var methodElement))
        {
            if (methodElement.ValueKind != JsonValueKind.String)
            {
                return Fail(line, "method", $"must be a string, found {Describe(methodElement.ValueKind)}");
            }

            var given = Text(methodElement);
            if (!string.Equals(given, "POST", StringComparison.OrdinalIgnoreCase))
            {
                return Fail(line, "method", $"'{given}' is not supported; use POST");
            }
        }

        var url = SupportedUrls[0];
        if (root.TryGetProperty("url", out var urlElement))
        {
            if (urlElement.ValueKind != JsonValueKind.String)
            {
                return Fail(line, "url", $"must be a string, found {Describe(urlElement.ValueKind)}");
            }

            url = Text(urlElement) ?? "";
            if (!SupportedUrls.Contains(url, StringComparer.Ordinal))
            {
                return Fail(line, "url", $"'{url}' is not supported; supported: {string.Join(", ", SupportedUrls)}");
            }
        }

        if (!root.TryGetProperty("body", out var body))
        {
            return Fail(line, "body", "missing");
        }

        if (body.ValueKind != JsonValueKind.Object)
        {
            return Fail(line, "body", $"must be a JSON object, found {Describe(body.ValueKind)}");
        }

        // A streamed answer is not a completion body: every such call would be paid for, then retried as unreadable.
        if (body.TryGetProperty("stream", out var stream) && stream.ValueKind != JsonValueKind.False)
        {
            return Fail(line, "body.stream", stream.ValueKind == JsonValueKind.True
                ? "streaming is not supported in a batch; remove it or set it to false"
                : $"must be false when present, found {Describe(stream.ValueKind)}");
        }

        // A schema the answer is validated against must be one, or every answer would fail validation.
        if (body.TryGetProperty("response_format", out var format) && format.ValueKind == JsonValueKind.Object
            && format.TryGetProperty("type", out var type) && type.ValueEquals("json_schema"))
        {
            if (AnswerValidator.SchemaOf(format) is not { } schema)
            {
                return Fail(line, "body.response_format.json_schema.schema", "missing");
            }

            if (AnswerValidator.SchemaProblem(schema.GetRawText()) is { } problem)
            {
                return Fail(line, "body.response_format.json_schema.schema", $"not a JSON Schema: {problem}");
            }
        }

        return new ParsedLine(new ItemRequest(checked((int)(line - 1)), customId, method, url, body.GetRawText()), null);
    }

    private static ParsedLine Fail(long line, string? field, string message) => new(null, new LineError(line, field, message));

    /// <summary>A string's text, or <c>null</c> when an escape in it is no valid UTF-16 (a lone surrogate such as <c>\ud800</c>).</summary>
    private static string? Text(JsonElement element)
    {
        try
        {
            return element.GetString();
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => kind.ToString(),
    };
}
