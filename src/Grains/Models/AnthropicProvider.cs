using Anthropic;
using Anthropic.Core;
using Microsoft.Extensions.Options;
using Nightshift.Pools;

namespace Nightshift.Models;

/// <summary>
/// <c>anthropic</c>: Anthropic's Messages API through the official <c>Anthropic</c> SDK. <see cref="ModelBinding.Endpoint"/>
/// is the API's base URL without a version segment (none: <see cref="DefaultEndpoint"/>), <see cref="ModelBinding.Model"/>
/// the Claude model. Each OpenAI chat body is translated to a Messages request and the answer back to a
/// <c>chat.completion</c>, so input and output lines keep their format.
/// </summary>
internal sealed class AnthropicProvider(ModelHttpClients http, IOptions<AnthropicOptions> options, TimeProvider time) : IChatModelProvider
{
    public const string ProviderName = "anthropic";

    public const string DefaultEndpoint = "https://api.anthropic.com";

    public string Name => ProviderName;

    public string? Validate(ModelBinding binding) =>
        ModelBindingReader.EndpointProblem(binding.Endpoint)
        ?? (binding.Model.Length == 0 ? $"model: the Claude model to ask (e.g. claude-sonnet-4-5), required for the '{ProviderName}' provider" : null);

    public IChatModel Create(ModelBinding binding)
    {
        var endpoint = ModelBindingReader.BaseUri(binding.Endpoint ?? DefaultEndpoint, "unreachable: the endpoint has a default");
        var client = new AnthropicClient(new ClientOptions
        {
            BaseUrl = endpoint.ToString(),

            // Nightshift owns retrying: one attempt is one HTTP request, with no timeout but the attempt's token.
            MaxRetries = 0,
            Timeout = Timeout.InfiniteTimeSpan,
            HttpClient = http.For(endpoint),

            // No SDK credential: it would send the key as "Authorization: Bearer" and read ANTHROPIC_* variables;
            // the exchange handler sends the binding's key as x-api-key instead.
            ApiKey = null,
            AuthToken = null,
            Handlers = [new AnthropicExchange.Handler(ModelBindingReader.ApiKey(binding))],
        });
        return new AnthropicMessagesModel(client, binding.Model, options.Value.DefaultMaxTokens, time);
    }
}
