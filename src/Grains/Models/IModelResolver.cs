using System.Collections.Concurrent;
using Nightshift.Pools;

namespace Nightshift.Models;

/// <summary>Finds the model client for a pool's binding.</summary>
public interface IModelResolver
{
    IChatModel Resolve(ModelBinding binding);
}

/// <summary>
/// One client per binding, sharing one pooled HTTP handler per endpoint host, so thousands of
/// concurrent calls reuse connections. The handler has no timeout of its own: each attempt's
/// timeout is its cancellation token.
/// </summary>
internal sealed class ModelResolver(SimulatedModel simulated) : IModelResolver, IDisposable
{
    private readonly ConcurrentDictionary<ModelBinding, IChatModel> _models = new();
    private readonly ConcurrentDictionary<string, HttpClient> _clients = new(StringComparer.OrdinalIgnoreCase);

    public IChatModel Resolve(ModelBinding binding) => binding.Provider switch
    {
        ModelProviders.Simulated => simulated,
        ModelProviders.OpenAiCompatible => _models.GetOrAdd(binding, CreateOpenAiCompatible),
        _ => throw new NotSupportedException($"Unknown model provider '{binding.Provider}'. Known: {ModelProviders.Simulated}, {ModelProviders.OpenAiCompatible}."),
    };

    public void Dispose()
    {
        foreach (var client in _clients.Values)
        {
            client.Dispose();
        }
    }

    private OpenAiCompatibleModel CreateOpenAiCompatible(ModelBinding binding)
    {
        var endpoint = binding.Endpoint ?? throw new InvalidOperationException("An OpenAI-compatible model needs an endpoint (its base URL).");
        var baseUri = new Uri(endpoint.EndsWith('/') ? endpoint : endpoint + "/");
        var apiKey = binding.ApiKeyEnvironmentVariable is { } variable
            ? Environment.GetEnvironmentVariable(variable) ?? throw new InvalidOperationException($"The environment variable '{variable}' that should hold the API key is not set.")
            : null;
        var client = _clients.GetOrAdd(baseUri.GetLeftPart(UriPartial.Authority), static _ => new HttpClient(new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            MaxConnectionsPerServer = int.MaxValue,
        })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        });
        return new OpenAiCompatibleModel(client, new Uri(baseUri, "chat/completions"), binding.Model, apiKey);
    }
}
