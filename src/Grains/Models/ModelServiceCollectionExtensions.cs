using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Nightshift.Pools;

namespace Nightshift.Models;

public static class ModelServiceCollectionExtensions
{
    /// <summary>
    /// The model providers and the registry that knows them (<see cref="IModelResolver"/> for the grains,
    /// <see cref="IModelProviderCatalog"/> for the pool API and the CLI). Idempotent, so a silo and an API in one
    /// host may both call it. A new provider is one file and one line here.
    /// </summary>
    public static IServiceCollection AddNightshiftModels(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton<ModelHttpClients>();
        services.AddChatModelProvider<SimulatedProvider>();
        services.AddChatModelProvider<OpenAiCompatibleProvider>();
        services.AddChatModelProvider<AzureOpenAiProvider>();
        services.AddChatModelProvider<AnthropicProvider>();
        services.AddOptions<AnthropicOptions>().BindConfiguration(AnthropicOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.TryAddSingleton<ModelProviderRegistry>();
        services.TryAddSingleton<IModelResolver>(sp => sp.GetRequiredService<ModelProviderRegistry>());
        services.TryAddSingleton<IModelProviderCatalog>(sp => sp.GetRequiredService<ModelProviderRegistry>());
        return services;
    }

    private static void AddChatModelProvider<TProvider>(this IServiceCollection services)
        where TProvider : class, IChatModelProvider =>
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IChatModelProvider, TProvider>());
}
