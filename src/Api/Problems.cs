using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Nightshift.Api;

/// <summary>RFC 9457 problem details with a title per kind and a specific detail.</summary>
internal static class Problems
{
    public static ProblemHttpResult NotFound(string detail) => Problem(StatusCodes.Status404NotFound, "Not found", detail);

    public static ProblemHttpResult BadRequest(string detail, IDictionary<string, object?>? extensions = null) =>
        Problem(StatusCodes.Status400BadRequest, "Invalid request", detail, extensions);

    public static ProblemHttpResult Conflict(string detail) => Problem(StatusCodes.Status409Conflict, "Conflict with the batch's state", detail);

    public static ProblemHttpResult KeyReused(string detail, string batchId) =>
        Problem(StatusCodes.Status422UnprocessableEntity, "Idempotency-Key reused", detail, new Dictionary<string, object?> { ["batchId"] = batchId });

    public static ProblemHttpResult TooLarge(string detail) => Problem(StatusCodes.Status413PayloadTooLarge, "Request body too large", detail);

    public static ProblemHttpResult UnsupportedMediaType(string detail) => Problem(StatusCodes.Status415UnsupportedMediaType, "Unsupported content type", detail);

    public static ProblemHttpResult QueueFull(string detail) => Problem(StatusCodes.Status429TooManyRequests, "Pool queue full", detail);

    public static ProblemHttpResult Problem(int status, string title, string detail, IDictionary<string, object?>? extensions = null) =>
        TypedResults.Problem(statusCode: status, title: title, detail: detail, extensions: extensions);
}
