using System.ClientModel;
using System.ClientModel.Primitives;
using System.Collections.Concurrent;
using Azure.AI.OpenAI;
using Azure.Identity;
using OpenAI;
using OpenAI.Chat;
using Nightshift.Pools;

namespace Nightshift.Models;

/// <summary>Finds the model client for a pool's binding.</summary>
public interface IModelResolver
{
    IChatModel Resolve(ModelBinding binding);
}

/// <summary>
/// One client per binding, all the clients of one endpoint host sharing one pooled HTTP handler, so
/// thousands of concurrent calls reuse connections. Neither the handler nor the client pipeline has a
/// timeout or a retry of its own: each attempt's timeout is its cancellation token, and Nightshift
/// owns retrying.
/// </summary>
internal sealed class ModelResolver(SimulatedModel simulated) : IModelResolver, IDisposable
{
    private readonly ConcurrentDictionary<ModelBinding, IChatModel> _models = new();
    private readonly ConcurrentDictionary<string, HttpClient> _clients = new(StringComparer.OrdinalIgnoreCase);
    private readonly Lazy<DefaultAzureCredential> _entraId = new(() => new DefaultAzureCredential());

    public IChatModel Resolve(ModelBinding binding) => binding.Provider switch
    {
        ModelProviders.Simulated => simulated,
        ModelProviders.OpenAiCompatible => _models.GetOrAdd(binding, CreateOpenAiCompatible),
        ModelProviders.AzureOpenAi => _models.GetOrAdd(binding, CreateAzureOpenAi),
        _ => throw new NotSupportedException(
            $"Unknown model provider '{binding.Provider}'. Known: {ModelProviders.Simulated}, {ModelProviders.OpenAiCompatible}, {ModelProviders.AzureOpenAi}."),
    };

    public void Dispose()
    {
        foreach (var client in _clients.Values)
        {
            client.Dispose();
        }
    }

    private OpenAiClientModel CreateOpenAiCompatible(ModelBinding binding)
    {
        var endpoint = EndpointOf(binding, "An OpenAI-compatible model needs an endpoint (its base URL).");
        var options = Configure(new OpenAIClientOptions { Endpoint = endpoint }, endpoint);

        // The OpenAI client insists on a key; an endpoint that takes none (Ollama, a local vLLM) gets
        // no Authorization header at all rather than a made-up key.
        var key = ApiKey(binding);
        if (key is null)
        {
            options.AddPolicy(new NoAuthorizationPolicy(), PipelinePosition.BeforeTransport);
        }

        var client = new ChatClient(binding.Model, new ApiKeyCredential(key ?? "none"), options);
        return new OpenAiClientModel(client, binding.Model);
    }

    private OpenAiClientModel CreateAzureOpenAi(ModelBinding binding)
    {
        var endpoint = EndpointOf(binding, "An Azure OpenAI model needs an endpoint (https://<resource>.openai.azure.com).");
        var options = Configure(new AzureOpenAIClientOptions(), endpoint);

        // No key variable means Entra ID: the host's managed identity, workload identity, or the
        // developer's Azure CLI login, as DefaultAzureCredential finds them.
        var azure = ApiKey(binding) is { } key
            ? new AzureOpenAIClient(endpoint, new ApiKeyCredential(key), options)
            : new AzureOpenAIClient(endpoint, _entraId.Value, options);
        return new OpenAiClientModel(azure.GetChatClient(binding.Model), binding.Model);
    }

    /// <summary>No retries, no pipeline timeout, and the endpoint host's shared pooled handler.</summary>
    private T Configure<T>(T options, Uri endpoint)
        where T : ClientPipelineOptions
    {
        options.RetryPolicy = new ClientRetryPolicy(maxRetries: 0);
        options.NetworkTimeout = Timeout.InfiniteTimeSpan;
        options.Transport = new HttpClientPipelineTransport(SharedClient(endpoint));
        return options;
    }

    private HttpClient SharedClient(Uri endpoint) =>
        _clients.GetOrAdd(endpoint.GetLeftPart(UriPartial.Authority), static _ => new HttpClient(new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            MaxConnectionsPerServer = int.MaxValue,
            EnableMultipleHttp2Connections = true,
        })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        });

    private static Uri EndpointOf(ModelBinding binding, string missing)
    {
        var endpoint = binding.Endpoint ?? throw new InvalidOperationException(missing);
        return new Uri(endpoint.EndsWith('/') ? endpoint : endpoint + "/");
    }

    private static string? ApiKey(ModelBinding binding) => binding.ApiKeyEnvironmentVariable is { } variable
        ? Environment.GetEnvironmentVariable(variable) ?? throw new InvalidOperationException($"The environment variable '{variable}' that should hold the API key is not set.")
        : null;

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
