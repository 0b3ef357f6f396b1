using System.ClientModel;
using System.ClientModel.Primitives;
using Nightshift.Pools;
using OpenAI;
using OpenAI.Chat;

namespace Nightshift.Models;

/// <summary>
/// <c>openai</c>: any endpoint that speaks OpenAI's chat completions (OpenAI, vLLM, Ollama, LM Studio, the
/// test mock), by its base URL including the version segment.
/// </summary>
internal sealed class OpenAiCompatibleProvider(ModelHttpClients http) : IChatModelProvider
{
    public const string ProviderName = "openai";

    public string Name => ProviderName;

    public string? Validate(ModelBinding binding) =>
        ModelBindingReader.EndpointProblem(binding.Endpoint)
        ?? (binding.Endpoint is null ? $"endpoint: required for the '{ProviderName}' provider" : null);

    public IChatModel Create(ModelBinding binding)
    {
        var endpoint = ModelBindingReader.BaseUri(binding.Endpoint, "An OpenAI-compatible model needs an endpoint (its base URL).");
        var options = OpenAiClientModel.WithoutRetries(new OpenAIClientOptions { Endpoint = endpoint }, http.For(endpoint));

        // The OpenAI client insists on a key; an endpoint that takes none (Ollama, a local vLLM) gets
        // no Authorization header at all rather than a made-up key.
        var key = ModelBindingReader.ApiKey(binding);
        if (key is null)
        {
            options.AddPolicy(new NoAuthorizationPolicy(), PipelinePosition.BeforeTransport);
        }

        var client = new ChatClient(binding.Model, new ApiKeyCredential(key ?? "none"), options);
        return new OpenAiClientModel(client, binding.Model);
    }

    private sealed class NoAuthorizationPolicy : PipelinePolicy
    {
        public override void Process(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
        {
            message.Request.Headers.Remove("Authorization");
            ProcessNext(message, pipeline, currentIndex);
        }

        public override ValueTask ProcessAsync(PipelineMessage message, IReadOnlyList<PipelinePolicy> pipeline, int currentIndex)
        {
            message.Request.Headers.Remove("Authorization");
            return ProcessNextAsync(message, pipeline, currentIndex);
        }
    }
}
