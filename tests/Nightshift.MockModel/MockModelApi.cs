using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Nightshift.MockModel;

/// <summary>The mock's HTTP endpoints: OpenAI and Azure OpenAI chat completions, plus its own counters.</summary>
internal static class MockModelApi
{
    public const string CustomIdHeader = "X-Nightshift-Custom-Id";
    public const string NoCustomId = "(none)";

    public static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static void MapMockModelApi(this IEndpointRouteBuilder endpoints, MockModelOptions options, CallCounter counter)
    {
        var completions = new ChatCompletionsEndpoint(options, counter);
        endpoints.MapPost("/v1/chat/completions", context => completions.HandleAsync(context, deployment: null));

        // Azure's shape; the api-version query is accepted whatever it is.
        endpoints.MapPost("/openai/deployments/{deployment}/chat/completions",
            context => completions.HandleAsync(context, context.GetRouteValue("deployment") as string));

        endpoints.MapGet("/stats", () => TypedResults.Json(counter.Snapshot(), Json));
        endpoints.MapGet("/stats/successes", () => TypedResults.Json(counter.Successes(), Json));
        endpoints.MapPost("/stats/reset", NoContent () =>
        {
            counter.Reset();
            return TypedResults.NoContent();
        });
        endpoints.MapGet("/health", () => TypedResults.Ok());
    }
}
