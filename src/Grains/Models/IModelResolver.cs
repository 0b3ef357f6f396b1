using Nightshift.Pools;

namespace Nightshift.Models;

/// <summary>Finds the model client for a pool's binding.</summary>
public interface IModelResolver
{
    IChatModel Resolve(ModelBinding binding);
}
