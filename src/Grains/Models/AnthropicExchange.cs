using System.Net.Http.Headers;

namespace Nightshift.Models;

/// <summary>
/// One Messages API request as the wire saw it. The SDK throws on a non-2xx answer with an exception that
/// keeps the status and body but drops the headers (<c>retry-after</c>, <c>anthropic-ratelimit-*</c>), which
/// rate control needs; its handler hook sees each HTTP exchange, and this carries the headers back to the call
/// that started it (an async-local, so concurrent calls on one client never mix).
/// </summary>
internal sealed class AnthropicExchange(string customId)
{
    private static readonly AsyncLocal<AnthropicExchange?> Current = new();

    public string CustomId { get; } = customId;

    /// <summary>The answer's headers, once one came.</summary>
    public HttpResponseHeaders? Headers { get; private set; }

    /// <summary>Marks the calls the current async flow makes as <paramref name="customId"/>'s exchange.</summary>
    public static AnthropicExchange Begin(string customId) => Current.Value = new AnthropicExchange(customId);

    /// <summary>Sends the key as <c>x-api-key</c> and the custom_id, and keeps the answer's headers; never logs either.</summary>
    public sealed class Handler(string? apiKey) : DelegatingHandler
    {
        protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
        {
            if (apiKey is not null)
            {
                request.Headers.Add("x-api-key", apiKey);
            }

            var exchange = Current.Value;
            if (exchange is not null)
            {
                request.Headers.Add(OpenAiClientModel.CustomIdHeader, exchange.CustomId);
            }

            var response = await base.SendAsync(request, cancellationToken);
            exchange?.Headers = response.Headers;
            return response;
        }
    }
}
