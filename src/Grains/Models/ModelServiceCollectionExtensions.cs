using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Nightshift.Pools;

namespace Nightshift.Models;

public static class ModelServiceCollectionExtensions
{
    /// <summary>
    /// The model providers and the registry that knows them (<see cref="IModelResolver"/> for the grains,
    /// <see cref="IModelProviderCatalog"/> for the pool API and the CLI). Idempotent, so a silo and an API in one
    /// host may both call it. A new provider is one file: every <see cref="IChatModelProvider"/> of this
    /// assembly is registered.
    /// </summary>
    public static IServiceCollection AddNightshiftModels(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<ModelHttpClients>();
        foreach (var provider in ProviderTypes)
        {
            services.TryAddEnumerable(ServiceDescriptor.Singleton(typeof(IChatModelProvider), provider));
        }

        services.AddOptions<AnthropicOptions>().BindConfiguration(AnthropicOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton<ModelProviderRegistry>();
        services.TryAddSingleton<IModelResolver>(sp => sp.GetRequiredService<ModelProviderRegistry>());
        services.TryAddSingleton<IModelProviderCatalog>(sp => sp.GetRequiredService<ModelProviderRegistry>());
        return services;
    }

    private static readonly Type[] ProviderTypes = [.. typeof(IChatModelProvider).Assembly.GetTypes()
        .Where(type => type is { IsClass: true, IsAbstract: false } && typeof(IChatModelProvider).IsAssignableFrom(type))];
}
