using System.Collections.Concurrent;
using Nightshift.Pools;

namespace Nightshift.Models;

/// <summary>
/// The registered <see cref="IChatModelProvider"/>s by name: the one place that knows which providers exist.
/// It resolves a binding to its model (one per binding, made once) and judges bindings for the pool API and
/// the <c>run</c> command.
/// </summary>
internal sealed class ModelProviderRegistry : IModelResolver, IModelProviderCatalog
{
    private readonly Dictionary<string, IChatModelProvider> _providers = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<ModelBinding, IChatModel> _models = new();

    public ModelProviderRegistry(IEnumerable<IChatModelProvider> providers)
    {
        var names = new List<string>();
        foreach (var provider in providers)
        {
            if (!_providers.TryAdd(provider.Name, provider))
            {
                throw new InvalidOperationException($"Two model providers are registered as '{provider.Name}'.");
            }

            names.Add(provider.Name);
        }

        Names = [.. names.Order(StringComparer.Ordinal)];
    }

    public IReadOnlyList<string> Names { get; }

    public string? Validate(ModelBinding binding) =>
        _providers.TryGetValue(binding.Provider, out var provider) ? provider.Validate(binding) : $"provider: {Unknown(binding.Provider)}";

    public IChatModel Resolve(ModelBinding binding) => _providers.TryGetValue(binding.Provider, out var provider)
        ? _models.GetOrAdd(binding, provider.Create)
        : throw new NotSupportedException($"model provider {Unknown(binding.Provider)}");

    private string Unknown(string name) =>
        $"'{name}' is not known; use {string.Join(", ", Names.SkipLast(1).Select(known => $"'{known}'"))} or '{Names[^1]}'";
}
