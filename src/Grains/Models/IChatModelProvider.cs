using Nightshift.Pools;

namespace Nightshift.Models;

/// <summary>
/// One kind of model endpoint, known by its <see cref="Name"/>: it judges a pool's <see cref="ModelBinding"/>
/// and makes the <see cref="IChatModel"/> that calls it. Each provider is one file, registered in
/// <see cref="ModelServiceCollectionExtensions.AddNightshiftModels"/>; the resolver, the pool API and the
/// <c>run</c> command know providers only through <see cref="ModelProviderRegistry"/>.
/// </summary>
public interface IChatModelProvider
{
    /// <summary>What <see cref="ModelBinding.Provider"/> says to choose this provider.</summary>
    string Name { get; }

    /// <summary>
    /// The first problem with <paramref name="binding"/>, naming its field (<c>endpoint: …</c>, <c>model: …</c>);
    /// <c>null</c> when it can be called. An empty <see cref="ModelBinding.Model"/> means none was given.
    /// </summary>
    string? Validate(ModelBinding binding);

    /// <summary>
    /// The model for <paramref name="binding"/>; called once per binding, whose model is then reused by every
    /// call. Throws <see cref="InvalidOperationException"/> when the binding cannot be called (a key variable not set).
    /// </summary>
    IChatModel Create(ModelBinding binding);
}

/// <summary>What the HTTP providers read from a binding the same way.</summary>
internal static class ModelBindingReader
{
    /// <summary>The endpoint as a base URI ending in '/', so relative paths append to it; <paramref name="missing"/> when there is none.</summary>
    public static Uri BaseUri(string? endpoint, string missing)
    {
        var url = endpoint ?? throw new InvalidOperationException(missing);
        return new Uri(url.EndsWith('/') ? url : url + "/");
    }

    /// <summary>The key from the variable the binding names; <c>null</c> when it names none.</summary>
    public static string? ApiKey(ModelBinding binding) => binding.ApiKeyEnvironmentVariable is { } variable
        ? Environment.GetEnvironmentVariable(variable) ?? throw new InvalidOperationException($"The environment variable '{variable}' that should hold the API key is not set.")
        : null;

    /// <summary>The problem with an absolute http(s) URL, or <c>null</c>.</summary>
    public static string? EndpointProblem(string? endpoint) =>
        endpoint is not null && !(Uri.TryCreate(endpoint, UriKind.Absolute, out var uri) && uri.Scheme is "http" or "https")
            ? "endpoint: must be an absolute http(s) URL"
            : null;
}
