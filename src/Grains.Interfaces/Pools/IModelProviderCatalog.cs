namespace Nightshift.Pools;

/// <summary>
/// The model providers a host knows, by name: what the pool API and the <c>run</c> command ask before they
/// accept a <see cref="ModelBinding"/>. Each provider states its own rules, so adding one changes no caller.
/// </summary>
public interface IModelProviderCatalog
{
    /// <summary>The providers' names, as <see cref="ModelBinding.Provider"/> takes them, in the order they were registered.</summary>
    IReadOnlyList<string> Names { get; }

    /// <summary>
    /// The first problem with <paramref name="binding"/>, naming its field (<c>provider</c>, <c>endpoint</c>,
    /// <c>model</c>); an unknown provider's message lists the known ones. <c>null</c> when the binding is usable.
    /// </summary>
    string? Validate(ModelBinding binding);
}
