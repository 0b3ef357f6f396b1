using System.Buffers;
using System.Text.Json;
using Nightshift.Storage;

namespace Nightshift.Results;

/// <summary>
/// Writes items as OpenAI Batch output lines: <c>id</c>, <c>custom_id</c>,
/// <c>response{status_code, request_id, body}</c> and <c>error{code, message}</c>.
/// </summary>
public static class BatchOutputWriter
{
    private static readonly JsonWriterOptions WriterOptions = new() { SkipValidation = false };

    /// <summary>Bytes gathered before they are written out; the output never holds more than this plus one line.</summary>
    private const int FlushThreshold = 64 * 1024;

    /// <summary>Writes every result as one line, streaming; returns how many succeeded and how many did not.</summary>
    /// <param name="results">The batch's terminal items, in input order.</param>
    /// <param name="batchId">The batch, for the lines' ids.</param>
    /// <param name="output">Where the lines go; written asynchronously only.</param>
    /// <param name="cancellationToken">Stops the writing.</param>
    public static async Task<(long Succeeded, long Failed)> WriteAsync(IAsyncEnumerable<ItemResult> results, string batchId, Stream output, CancellationToken cancellationToken)
    {
        long succeeded = 0, failed = 0;
        var buffer = new ArrayBufferWriter<byte>(FlushThreshold * 2);
        await using var json = new Utf8JsonWriter(buffer, WriterOptions);
        await foreach (var result in results.WithCancellation(cancellationToken))
        {
            WriteLine(json, batchId, result);
            json.Flush();
            json.Reset();
            buffer.Write("\n"u8);
            if (buffer.WrittenCount >= FlushThreshold)
            {
                // Asynchronous writes only: an HTTP response body refuses synchronous ones.
                await output.WriteAsync(buffer.WrittenMemory, cancellationToken);
                buffer.ResetWrittenCount();
            }

            if (result.State == ItemState.Succeeded)
            {
                succeeded++;
            }
            else
            {
                failed++;
            }
        }

        await output.WriteAsync(buffer.WrittenMemory, cancellationToken);
        await output.FlushAsync(cancellationToken);
        return (succeeded, failed);
    }

    private static void WriteLine(Utf8JsonWriter json, string batchId, ItemResult result)
    {
        json.WriteStartObject();
        json.WriteString("id", $"batch_req_{batchId}_{result.Index}");
        json.WriteString("custom_id", result.CustomId);
        if (result.StatusCode is { } status && result.Response is { } body)
        {
            json.WriteStartObject("response");
            json.WriteNumber("status_code", status);
            json.WriteString("request_id", $"{batchId}-{result.Index}");
            json.WritePropertyName("body");
            WriteBody(json, body);
            json.WriteEndObject();
        }
        else
        {
            json.WriteNull("response");
        }

        if (result.State == ItemState.Succeeded)
        {
            json.WriteNull("error");
        }
        else
        {
            json.WriteStartObject("error");
            json.WriteString("code", ErrorCode(result));
            json.WriteString("message", result.Error ?? result.State.ToString().ToLowerInvariant());
            json.WriteEndObject();
        }

        json.WriteEndObject();
    }

    /// <summary>The error code of an item that did not succeed: its error names one before a colon, or it is <c>cancelled</c> or <c>failed</c>.</summary>
    private static string ErrorCode(ItemResult result) => result.State == ItemState.Cancelled
        ? Cancelled
        : result.Error?.StartsWith(ValidationFailed + ":", StringComparison.Ordinal) == true ? ValidationFailed : Failed;

    /// <summary>The error code (and the start of the error) of an item whose answers kept failing the JSON its request or batch asked for.</summary>
    public const string ValidationFailed = "validation_failed";

    /// <summary>The error code of an item that failed otherwise.</summary>
    public const string Failed = "failed";

    /// <summary>The error code of an item that was cancelled.</summary>
    public const string Cancelled = "cancelled";

    /// <summary>Every error code a result may carry, as a message lists them: <c>'validation_failed', 'failed' or 'cancelled'</c>.</summary>
    public const string ErrorCodes = $"'{ValidationFailed}', '{Failed}' or '{Cancelled}'";

    /// <summary>Bodies are written as JSON when they are JSON, and as a string when a provider sent something else.</summary>
    private static void WriteBody(Utf8JsonWriter json, string body)
    {
        try
        {
            using var document = JsonDocument.Parse(body);
            document.RootElement.WriteTo(json);
        }
        catch (JsonException)
        {
            json.WriteStringValue(body);
        }
    }
}
