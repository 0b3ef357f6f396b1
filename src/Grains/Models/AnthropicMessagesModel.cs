using System.Net.Http.Headers;
using System.Text.Json;
using Anthropic;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;

namespace Nightshift.Models;

/// <summary>
/// Chat completions on Anthropic's Messages API. The SDK's retries are off, so one call is one HTTP request;
/// the body is translated (<see cref="AnthropicTranslation"/>), the answer translated back to a <c>chat.completion</c>,
/// and a 429 or a 529 "overloaded" reports its wait and the <c>anthropic-ratelimit-*</c> figures to rate control
/// as OpenAI's answers do.
/// </summary>
internal sealed class AnthropicMessagesModel(AnthropicClient client, string model, int defaultMaxTokens, TimeProvider time) : IChatModel
{
    /// <summary>Anthropic's "the API is overloaded": a back-off like a 429, for every client at once.</summary>
    private const int Overloaded = 529;

    private static readonly Dictionary<string, JsonElement> None = [];

    public async Task<ModelCallResult> CompleteAsync(ModelRequest request, CancellationToken cancellationToken)
    {
        Dictionary<string, JsonElement> body;
        try
        {
            body = AnthropicTranslation.ToMessagesRequest(request.Body, model, defaultMaxTokens)
                .ToDictionary(field => field.Key, field => JsonSerializer.SerializeToElement(field.Value));
        }
        catch (FormatException untranslatable)
        {
            // Answered as the API answers a request it cannot take, without sending it: permanent, never billed.
            return ModelCallResult.Http(400, null, $"the request cannot be sent to the Messages API: {untranslatable.Message}");
        }

        var exchange = AnthropicExchange.Begin(request.CustomId);
        try
        {
            using var response = await client.WithRawResponse.Messages.Create(MessageCreateParams.FromRawUnchecked(None, None, body), cancellationToken);
            var answer = await response.ReadAsString(cancellationToken);
            var now = time.GetUtcNow();
            return Completion((int)response.StatusCode, answer, now) with { Limits = AnthropicRateLimitHeaders.Read(response.RawMessage.Headers, now) };
        }
        catch (AnthropicApiException refused)
        {
            return Refusal((int)refused.StatusCode, refused.ResponseBody, exchange.Headers);
        }
        catch (Exception network) when (network is AnthropicIOException or HttpRequestException or IOException && !cancellationToken.IsCancellationRequested)
        {
            // No answer at all: the connection failed or the body could not be read to its end.
            return ModelCallResult.Network(network.InnerException?.Message ?? network.Message);
        }
    }

    private static ModelCallResult Completion(int status, string answer, DateTimeOffset now)
    {
        if (AnthropicTranslation.ToChatCompletion(answer, now) is not var (body, usage, finishReason))
        {
            return ModelCallResult.Network($"HTTP {status} with a body that is not a Messages answer (truncated or malformed)");
        }

        return finishReason == "content_filter"
            ? ModelCallResult.ContentFiltered(body, usage, "the model refused to answer (stop_reason 'refusal')")
            : ModelCallResult.Success(body, usage);
    }

    private ModelCallResult Refusal(int status, string? body, HttpResponseHeaders? headers)
    {
        var now = time.GetUtcNow();
        var message = body is null ? null : OpenAiClientModel.ErrorMessage(body);
        var wait = headers is null ? null : AnthropicRateLimitHeaders.Wait(headers, now);
        return ModelCallResult.Http(status, body, $"HTTP {status}: {message ?? "no error message"}", wait) with
        {
            Overloaded = status == Overloaded,
            Limits = headers is null ? null : AnthropicRateLimitHeaders.Read(headers, now),
        };
    }
}
