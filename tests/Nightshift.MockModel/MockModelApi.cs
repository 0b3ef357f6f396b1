using System.Text.Json;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Nightshift.MockModel;

/// <summary>The mock's HTTP endpoints: OpenAI and Azure OpenAI chat completions, Anthropic's messages, plus its own counters.</summary>
internal static class MockModelApi
{
    public const string CustomIdHeader = "X-Nightshift-Custom-Id";
    public const string NoCustomId = "(none)";

    /// <summary>Anthropic's "overloaded" status.</summary>
    public const int Overloaded = 529;

    public static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static void MapMockModelApi(this IEndpointRouteBuilder endpoints, MockModelOptions options, CallCounter counter)
    {
        var completions = new CompletionEndpoint(options, counter, new OpenAiDialect());
        endpoints.MapPost("/v1/chat/completions", context => completions.HandleAsync(context, deployment: null));

        // Azure's shape; the api-version query is accepted whatever it is.
        endpoints.MapPost("/openai/deployments/{deployment}/chat/completions",
            context => completions.HandleAsync(context, context.GetRouteValue("deployment") as string));

        var messages = new CompletionEndpoint(options, counter, new AnthropicDialect());
        endpoints.MapPost("/v1/messages", context => messages.HandleAsync(context, deployment: null));

        endpoints.MapGet("/stats", () => TypedResults.Json(counter.Snapshot(), Json));
        endpoints.MapGet("/stats/successes", () => TypedResults.Json(counter.Successes(), Json));
        endpoints.MapGet("/stats/arrivals", () => TypedResults.Json(counter.Arrivals(), Json));
        endpoints.MapGet("/stats/temperatures", () => TypedResults.Json(counter.Temperatures(), Json));
        endpoints.MapPost("/stats/reset", NoContent () =>
        {
            counter.Reset();
            return TypedResults.NoContent();
        });
        endpoints.MapGet("/health", () => TypedResults.Ok());
    }
}
