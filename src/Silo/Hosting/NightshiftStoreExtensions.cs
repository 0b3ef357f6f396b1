using Nightshift.Hosting;
using Nightshift.Storage;

namespace Nightshift.Silo.Hosting;

/// <summary>The composition root's one choice of store, for silos and for the API-only process alike.</summary>
internal static class NightshiftStoreExtensions
{
    /// <summary>
    /// Registers the item store that <c>Nightshift:Store</c> names (PostgreSQL when it has a
    /// <c>ConnectionString</c>, else the SQLite file at <c>Path</c>) under its role interfaces, and batch
    /// submission on it. Returns the options as configured, for the host to choose its clustering.
    /// </summary>
    public static ItemStoreOptions AddNightshiftStore(this IServiceCollection services, IConfiguration configuration)
    {
        services.AddOptions<ItemStoreOptions>().BindConfiguration(ItemStoreOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<RelationalItemStore>();
        services.AddSingleton<IItemStore>(sp => sp.GetRequiredService<RelationalItemStore>());
        services.AddSingleton<IItemIngest>(sp => sp.GetRequiredService<RelationalItemStore>());
        services.AddSingleton<IItemDispatch>(sp => sp.GetRequiredService<RelationalItemStore>());
        services.AddSingleton<IItemCatalogue>(sp => sp.GetRequiredService<RelationalItemStore>());
        services.AddSingleton<IWebhookOutbox>(sp => sp.GetRequiredService<RelationalItemStore>());
        services.AddNightshiftSubmission();
        return configuration.GetSection(ItemStoreOptions.Section).Get<ItemStoreOptions>() ?? new ItemStoreOptions();
    }

    /// <summary>
    /// The settings a <c>--store</c> value stands for: with <c>=</c> in it (<c>Host=…;Database=…</c>) a
    /// PostgreSQL connection string; anything else the path of an SQLite file (and no connection string).
    /// </summary>
    public static Dictionary<string, string?> StoreSettings(string? store) =>
        store is null ? []
        : store.Contains('=', StringComparison.Ordinal) ? new() { [$"{ItemStoreOptions.Section}:ConnectionString"] = store }
        : new() { [$"{ItemStoreOptions.Section}:Path"] = store, [$"{ItemStoreOptions.Section}:ConnectionString"] = "" };
}
