using Nightshift.Pools;

namespace Nightshift.Models;

/// <summary>Finds the model client for a pool's binding.</summary>
public interface IModelResolver
{
    IChatModel Resolve(ModelBinding binding);
}

internal sealed class ModelResolver(SimulatedModel simulated) : IModelResolver
{
    public IChatModel Resolve(ModelBinding binding) => binding.Provider switch
    {
        ModelProviders.Simulated => simulated,
        _ => throw new NotSupportedException($"Unknown model provider '{binding.Provider}'. Known: {ModelProviders.Simulated}."),
    };
}
