using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Http.HttpResults;
using Microsoft.AspNetCore.Routing;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;
using Nightshift.Api.Security;
using Nightshift.Api.Webhooks;
using Nightshift.Batches;
using Nightshift.Models;
using Nightshift.Results;
using Nightshift.Storage;
using Nightshift.Submission;

namespace Nightshift.Api.Batches;

public static class BatchesApi
{
    /// <summary>Media types read as OpenAI Batch JSONL.</summary>
    private static readonly string[] JsonlTypes = ["application/x-ndjson", "application/jsonl", "application/x-jsonlines", "application/jsonlines"];

    public static RouteGroupBuilder MapBatchesApi(this IEndpointRouteBuilder endpoints)
    {
        var batches = endpoints.MapGroup("/v1/batches").WithTags("Batches").AddEndpointFilter(TeamScope.OwnBatchesOnly);
        // The content type is dispatched by the handler (JSON, JSONL or multipart), which answers an
        // unknown one with a problem rather than the framework's empty 415.
        batches.MapPost("/", SubmitAsync).DisableAntiforgery();
        batches.MapGet("/", ListAsync);
        batches.MapGet("/{id}", GetAsync);
        batches.MapGet("/{id}/results", ResultsAsync).Produces(StatusCodes.Status200OK, contentType: "application/x-ndjson");
        batches.MapPost("/{id}/cancel", (string id, IGrainFactory grains, IOptions<PriceTable> prices, TimeProvider time) => ControlAsync(id, grains, prices, time, batch => batch.Cancel()));
        batches.MapPost("/{id}/pause", (string id, IGrainFactory grains, IOptions<PriceTable> prices, TimeProvider time) => ControlAsync(id, grains, prices, time, batch => batch.Pause()));
        batches.MapPost("/{id}/resume", (string id, IGrainFactory grains, IOptions<PriceTable> prices, TimeProvider time) => ControlAsync(id, grains, prices, time, batch => batch.Resume()));
        batches.MapPost("/{id}/retry", RetryAsync);
        batches.MapGet("/{id}/webhooks", WebhooksAsync);
        batches.MapGet("/{id}/items/{customId}", ItemAsync);
        return batches;
    }

    /// <summary><c>GET /v1/batches/{id}/webhooks</c>: the batch's webhook deliveries, one per run that reached its end, oldest first.</summary>
    private static async Task<Results<Ok<IReadOnlyList<WebhookView>>, ProblemHttpResult>> WebhooksAsync(string id, IGrainFactory grains, IWebhookOutbox outbox,
        CancellationToken cancellationToken)
    {
        if ((await grains.GetGrain<IBatchGrain>(id).GetStatus()).State == BatchState.NotFound)
        {
            return Problems.NotFound($"batch '{id}' does not exist");
        }

        var deliveries = await outbox.ListWebhooksAsync(id, cancellationToken);
        return TypedResults.Ok<IReadOnlyList<WebhookView>>([.. deliveries.Select(WebhookView.From)]);
    }

    /// <summary>
    /// <c>POST /v1/batches/{id}/retry</c> with <c>{"status", "errorCode", "pool"}</c> (each optional, the body
    /// too): a finished batch's failed or cancelled items that match go back to pending with fresh budgets,
    /// on <c>pool</c> if given, and the batch runs again. Answers the batch and how many items were requeued.
    /// </summary>
    private static async Task<Results<Ok<RetryView>, ProblemHttpResult>> RetryAsync(string id, HttpContext context, IGrainFactory grains, IOptions<PriceTable> prices,
        TimeProvider time)
    {
        var batch = grains.GetGrain<IBatchGrain>(id);
        if ((await batch.GetStatus()).State == BatchState.NotFound)
        {
            return Problems.NotFound($"batch '{id}' does not exist");
        }

        JsonElement request;
        try
        {
            request = context.Request.ContentLength is 0 or null && !context.Request.Headers.ContainsKey("Transfer-Encoding")
                ? JsonDocument.Parse("{}").RootElement
                : (await JsonDocument.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted)).RootElement;
        }
        catch (JsonException malformed)
        {
            return Problems.BadRequest($"malformed JSON: {malformed.Message}");
        }

        if (RetryFilter(request, out var filter, out var pool) is { } problem)
        {
            return Problems.BadRequest(problem);
        }

        try
        {
            var requeued = await batch.Retry(filter, pool);
            return TypedResults.Ok(new RetryView(requeued, await BatchView.FromAsync(await batch.GetStatus(), grains, prices.Value, time.GetUtcNow())));
        }
        catch (InvalidOperationException running)
        {
            return Problems.Conflict(running.Message);
        }
        catch (ArgumentException unknownPool)
        {
            return Problems.BadRequest($"pool: {unknownPool.Message.Split(" (Parameter", 2)[0]}");
        }
    }

    /// <summary>The retry's filter and pool from its body; the problem, naming the field, when it has a bad one.</summary>
    private static string? RetryFilter(JsonElement request, out ItemRetryFilter filter, out string? pool)
    {
        filter = new ItemRetryFilter(null, null);
        pool = null;
        if (request.ValueKind != JsonValueKind.Object)
        {
            return "the body must be a JSON object: {\"status\", \"errorCode\", \"pool\"}, each optional";
        }

        string[] known = ["status", "errorCode", "pool"];
        if (request.EnumerateObject().Select(field => field.Name).Where(name => !known.Contains(name)).ToList() is { Count: > 0 } unknown)
        {
            return $"unknown field(s) {string.Join(", ", unknown.Select(name => $"'{name}'"))}; known: {string.Join(", ", known)}";
        }

        string? Text(string name) => request.TryGetProperty(name, out var value) ? value.ValueKind == JsonValueKind.String ? value.GetString() : "" : null;
        ItemState? state = Text("status") switch
        {
            null => null,
            "failed" => ItemState.Failed,
            "cancelled" => ItemState.Cancelled,
            _ => ItemState.Pending,
        };
        if (state == ItemState.Pending)
        {
            return "status: 'failed' or 'cancelled'";
        }

        var code = Text("errorCode");
        if (code is not (null or BatchOutputWriter.ValidationFailed or BatchOutputWriter.Failed or BatchOutputWriter.Cancelled))
        {
            return $"errorCode: {BatchOutputWriter.ErrorCodes}";
        }

        pool = Text("pool");
        if (pool is "")
        {
            return "pool: a non-empty string";
        }

        filter = new ItemRetryFilter(state, code);
        return null;
    }

    /// <summary>
    /// <c>POST /v1/batches</c>: JSON <c>{pool, items, options}</c>, or a JSONL upload (raw body or a
    /// multipart file) with <c>pool</c> and the options as query parameters. The upload is streamed into
    /// one store transaction; any problem rolls it back whole.
    /// </summary>
    private static async Task<IResult> SubmitAsync(HttpContext context, IGrainFactory grains, IBatchSubmitter submitter, IOptions<ApiOptions> options, IOptions<PriceTable> prices, TimeProvider time)
    {
        var request = context.Request;
        var cancellationToken = context.RequestAborted;
        var batchId = BatchId(request.Headers["Idempotency-Key"], Principal.Of(context).Team);
        if (batchId is null)
        {
            return Problems.BadRequest("Idempotency-Key: 1 to 256 characters");
        }

        var limits = options.Value;
        var mediaType = MediaTypeHeaderValue.TryParse(request.ContentType, out var parsed) ? parsed.MediaType.Value : null;
        var json = string.Equals(mediaType, "application/json", StringComparison.OrdinalIgnoreCase);
        var multipart = string.Equals(mediaType, "multipart/form-data", StringComparison.OrdinalIgnoreCase);
        if (!json && !multipart && !JsonlTypes.Contains(mediaType, StringComparer.OrdinalIgnoreCase))
        {
            return Problems.UnsupportedMediaType(mediaType is null
                ? "a Content-Type is required: application/json, application/x-ndjson (JSONL) or multipart/form-data with a JSONL file"
                : $"'{mediaType}' is not accepted: use application/json, application/x-ndjson (JSONL) or multipart/form-data with a JSONL file");
        }

        var limit = json ? limits.MaxJsonBytes : limits.MaxUploadBytes;
        if (request.ContentLength > limit)
        {
            return Problems.TooLarge($"the body is {request.ContentLength} bytes; the limit is {limit} (Nightshift:Api:{(json ? "MaxJsonBytes" : "MaxUploadBytes")})");
        }

        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } bodySize)
        {
            bodySize.MaxRequestBodySize = limit;
        }

        try
        {
            return json
                ? await SubmitJsonAsync(context, batchId, submitter, grains, limits, prices, time)
                : await SubmitJsonlAsync(context, batchId, multipart, submitter, grains, prices, time);
        }
        catch (BadHttpRequestException tooLarge) when (tooLarge.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return Problems.TooLarge($"the body passed the limit of {limit} bytes (Nightshift:Api:{(json ? "MaxJsonBytes" : "MaxUploadBytes")}); nothing was written");
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return TypedResults.Empty;
        }
    }

    private static async Task<IResult> SubmitJsonlAsync(HttpContext context, string batchId, bool multipart, IBatchSubmitter submitter, IGrainFactory grains, IOptions<PriceTable> prices, TimeProvider time)
    {
        var query = context.Request.Query;
        if (query["pool"].ToString() is not { Length: > 0 } pool)
        {
            return Problems.BadRequest("pool: the query parameter 'pool' is required with a JSONL upload");
        }

        if (BatchOptionsReader.Unknown(query.Keys, "pool") is { } unknown)
        {
            return Problems.BadRequest($"query: {unknown}");
        }

        if (!BatchOptionsReader.TryRead(name => query.TryGetValue(name, out var value) ? value.ToString() : null, out var batchOptions, out var problem))
        {
            return Problems.BadRequest(problem!);
        }

        if (!multipart)
        {
            return await SubmitStreamAsync(context, batchId, pool, batchOptions, context.Request.Body, submitter, grains, prices, time, itemNames: false);
        }

        // The first part that is a file is the JSONL; it is read as it arrives, never buffered whole.
        var boundary = HeaderUtilities.RemoveQuotes(MediaTypeHeaderValue.Parse(context.Request.ContentType).Boundary).Value;
        if (string.IsNullOrEmpty(boundary))
        {
            return Problems.BadRequest("multipart/form-data without a boundary");
        }

        var reader = new MultipartReader(boundary, context.Request.Body);
        while (await reader.ReadNextSectionAsync(context.RequestAborted) is { } section)
        {
            if (ContentDispositionHeaderValue.TryParse(section.ContentDisposition, out var disposition) && disposition.IsFileDisposition())
            {
                return await SubmitStreamAsync(context, batchId, pool, batchOptions, section.Body, submitter, grains, prices, time, itemNames: false);
            }
        }

        return Problems.BadRequest("the multipart body has no file part: send the JSONL as a file");
    }

    private static async Task<IResult> SubmitJsonAsync(HttpContext context, string batchId, IBatchSubmitter submitter, IGrainFactory grains, ApiOptions limits, IOptions<PriceTable> prices, TimeProvider time)
    {
        JsonDocument document;
        try
        {
            document = await JsonDocument.ParseAsync(context.Request.Body, default, context.RequestAborted);
        }
        catch (JsonException malformed)
        {
            return Problems.BadRequest($"malformed JSON: {malformed.Message}");
        }

        using (document)
        {
            var root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                return Problems.BadRequest("the body must be a JSON object: {\"pool\", \"items\", \"options\"}");
            }

            if (root.EnumerateObject().Select(property => property.Name).Except(["pool", "items", "options"], StringComparer.Ordinal).ToList() is { Count: > 0 } extra)
            {
                return Problems.BadRequest($"unknown field(s) {string.Join(", ", extra.Select(name => $"'{name}'"))}; the body is {{\"pool\", \"items\", \"options\"}}");
            }

            if (!root.TryGetProperty("pool", out var poolElement) || poolElement.ValueKind != JsonValueKind.String || poolElement.GetString() is not { Length: > 0 } pool)
            {
                return Problems.BadRequest("pool: required, a non-empty string");
            }

            if (!root.TryGetProperty("items", out var items) || items.ValueKind != JsonValueKind.Array)
            {
                return Problems.BadRequest("items: required, an array of {\"custom_id\", \"body\"}");
            }

            var options = new BatchOptions();
            if (root.TryGetProperty("options", out var optionsElement))
            {
                if (optionsElement.ValueKind != JsonValueKind.Object)
                {
                    return Problems.BadRequest("options: must be an object");
                }

                if (BatchOptionsReader.Unknown(optionsElement.EnumerateObject().Select(property => property.Name)) is { } unknown)
                {
                    return Problems.BadRequest($"options: {unknown}");
                }

                if (!BatchOptionsReader.TryRead(BatchOptionsReader.FromJson(optionsElement), out options, out var problem))
                {
                    return Problems.BadRequest($"options.{problem}");
                }
            }

            // Each item is shaped like a JSONL line, so the one validating reader serves both forms. Written
            // compact: an item indented over several lines (as most tools pretty-print) must stay one line.
            var lines = new MemoryStream(capacity: Math.Min(limits.MaxJsonBytes, (int)(context.Request.ContentLength ?? 4096)));
            foreach (var item in items.EnumerateArray())
            {
                using (var line = new Utf8JsonWriter(lines, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
                {
                    item.WriteTo(line);
                }

                lines.WriteByte((byte)'\n');
            }

            lines.Position = 0;
            return await SubmitStreamAsync(context, batchId, pool, options, lines, submitter, grains, prices, time, itemNames: true);
        }
    }

    private static async Task<IResult> SubmitStreamAsync(HttpContext context, string batchId, string pool, BatchOptions options, Stream jsonl,
        IBatchSubmitter submitter, IGrainFactory grains, IOptions<PriceTable> prices, TimeProvider time, bool itemNames)
    {
        options = options with { Owner = Principal.Of(context).Owner };
        var webhooks = context.RequestServices.GetRequiredService<IOptions<WebhookOptions>>().Value;
        if (options.CallbackUrl is { } callback && webhooks.Refusal(callback) is { } refused)
        {
            return Problems.BadRequest($"callbackUrl: {refused}");
        }

        // With a key, a retried (or concurrent) submission finds the batch the first one created.
        var key = context.Request.Headers["Idempotency-Key"].ToString();
        var result = await submitter.SubmitAsync(batchId, pool, options, jsonl, key.Length > 0 ? key : null, context.RequestAborted);
        switch (result.Rejection)
        {
            case SubmissionRejection.None when result.Replayed:
                context.Response.Headers["Idempotent-Replayed"] = "true";
                context.Response.Headers.Location = $"/v1/batches/{batchId}";
                var replayed = await grains.GetGrain<IBatchGrain>(batchId).GetStatus();
                return TypedResults.Ok(await BatchView.FromAsync(replayed, grains, prices.Value, time.GetUtcNow()));
            case SubmissionRejection.None:
                var status = await grains.GetGrain<IBatchGrain>(batchId).GetStatus();
                return TypedResults.Created($"/v1/batches/{batchId}", await BatchView.FromAsync(status, grains, prices.Value, time.GetUtcNow()));
            case SubmissionRejection.KeyReused:
                return Problems.KeyReused(result.Reason!, batchId);
            case SubmissionRejection.InvalidInput:
                var errors = result.Errors.Select(e => new LineProblem(e.Line, e.Field, e.Message)).ToList();
                var first = result.Errors[0];
                var where = itemNames ? $"items[{first.Line - 1}]" : $"line {first.Line}";
                var detail = $"{result.Errors.Count} invalid {(itemNames ? "item" : "line")}(s); first: {where}{(first.Field is null ? "" : $", field '{first.Field}'")}: {first.Message}";
                return Problems.BadRequest(detail, new Dictionary<string, object?> { ["errors"] = errors });
            case SubmissionRejection.UnknownPool:
                return Problems.BadRequest($"pool: {result.Reason}");
            case SubmissionRejection.InvalidOptions:
                return Problems.BadRequest(result.Reason!);
            case SubmissionRejection.QueueFull:
                return Problems.QueueFull(result.Reason ?? "the pool's queue is full");
            default:
                return Problems.Conflict(result.Reason ?? $"batch '{batchId}' already exists");
        }
    }

    private static async Task<Results<Ok<BatchPage>, ProblemHttpResult>> ListAsync(HttpContext context, IItemCatalogue store, string? state, int? limit, int? offset,
        CancellationToken cancellationToken)
    {
        BatchState? filter = null;
        if (state is not null)
        {
            if (!Enum.TryParse<BatchState>(state, ignoreCase: true, out var parsed) || parsed == BatchState.NotFound || !Enum.IsDefined(parsed) || int.TryParse(state, out _))
            {
                return Problems.BadRequest($"state: '{state}' is not one of running, paused, cancelled, completed");
            }

            filter = parsed;
        }

        var size = limit ?? 50;
        var start = offset ?? 0;
        if (size is < 1 or > 1000 || start < 0)
        {
            return Problems.BadRequest("limit: from 1 to 1000; offset: 0 or more");
        }

        // A user sees its team's batches only; an admin, every batch.
        var principal = Principal.Of(context);
        var page = await store.ListBatchesAsync(filter, start, size + 1, cancellationToken, principal.Admin ? null : principal.Team);
        return TypedResults.Ok(new BatchPage([.. page.Take(size).Select(BatchSummary.From)], start, size, page.Count > size ? start + size : null));
    }

    /// <summary><c>GET /v1/batches/{id}</c>: the batch's view, with the calls that may have been billed with no answer kept.</summary>
    private static async Task<Results<Ok<BatchView>, ProblemHttpResult>> GetAsync(string id, IGrainFactory grains, IItemCatalogue store, IOptions<PriceTable> prices,
        TimeProvider time, CancellationToken cancellationToken)
    {
        var status = await grains.GetGrain<IBatchGrain>(id).GetStatus();
        if (status.State == BatchState.NotFound)
        {
            return Problems.NotFound($"batch '{id}' does not exist");
        }

        return TypedResults.Ok(await BatchView.WithMaybeBilledAsync(status, grains, store, prices.Value, time.GetUtcNow(), cancellationToken));
    }

    /// <summary><c>GET /v1/batches/{id}/items/{customId}</c>: the item's state and every attempt it made, oldest first.</summary>
    private static async Task<Results<Ok<ItemView>, ProblemHttpResult>> ItemAsync(string id, string customId, IGrainFactory grains, IItemCatalogue store,
        IOptions<PriceTable> prices, CancellationToken cancellationToken)
    {
        if ((await grains.GetGrain<IBatchGrain>(id).GetStatus()).State == BatchState.NotFound)
        {
            return Problems.NotFound($"batch '{id}' does not exist");
        }

        return await store.GetItemHistoryAsync(id, customId, cancellationToken) is { } item
            ? TypedResults.Ok(ItemView.From(item, prices.Value))
            : Problems.NotFound($"batch '{id}' has no item with custom_id '{customId}'");
    }

    /// <summary>Streams the batch's finished items as OpenAI Batch output lines, also while it runs.</summary>
    private static async Task<IResult> ResultsAsync(HttpContext context, string id, string? status, string? filter, IGrainFactory grains, IItemCatalogue store)
    {
        var wanted = status ?? filter;
        if (wanted is not (null or "succeeded" or "failed"))
        {
            return Problems.BadRequest($"status: '{wanted}' is not 'succeeded' or 'failed'");
        }

        if ((await grains.GetGrain<IBatchGrain>(id).GetStatus()).State == BatchState.NotFound)
        {
            return Problems.NotFound($"batch '{id}' does not exist");
        }

        context.Response.ContentType = "application/x-ndjson";
        var results = store.ReadResultsAsync(id, context.RequestAborted)
            .Where(r => wanted is null || (wanted == "succeeded") == (r.State == ItemState.Succeeded));
        await BatchOutputWriter.WriteAsync(results, id, context.Response.Body, context.RequestAborted);
        return TypedResults.Empty;
    }

    private static async Task<Results<Ok<BatchView>, ProblemHttpResult>> ControlAsync(string id, IGrainFactory grains, IOptions<PriceTable> prices, TimeProvider time, Func<IBatchGrain, Task> action)
    {
        var batch = grains.GetGrain<IBatchGrain>(id);
        if ((await batch.GetStatus()).State == BatchState.NotFound)
        {
            return Problems.NotFound($"batch '{id}' does not exist");
        }

        try
        {
            await action(batch);
        }
        catch (InvalidOperationException illegal)
        {
            return Problems.Conflict(illegal.Message);
        }

        return TypedResults.Ok(await BatchView.FromAsync(await batch.GetStatus(), grains, prices.Value, time.GetUtcNow()));
    }

    /// <summary>
    /// With an Idempotency-Key the batch id is derived from it, so a retry finds the batch the first
    /// try created; without one, a fresh id. <c>null</c> for a key that is empty or too long.
    /// </summary>
    private static string? BatchId(string? idempotencyKey, string? team)
    {
        if (idempotencyKey is null)
        {
            return "b-" + Guid.NewGuid().ToString("n");
        }

        // A team's keys are its own: the same key from another team names another batch.
        var scoped = team is null ? idempotencyKey : $"{team}\n{idempotencyKey}";
        return idempotencyKey.Length is 0 or > 256
            ? null
            : "b-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(scoped)).AsSpan(0, 16));
    }
}
