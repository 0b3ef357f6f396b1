using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Nightshift.Batches;
using Nightshift.Items;
using Nightshift.Models;
using Nightshift.Storage;
using Nightshift.Storage.Sqlite;
using Nightshift.Submission;
using Orleans.Configuration;

namespace Nightshift.Hosting;

public static class NightshiftSiloBuilderExtensions
{
    /// <summary>The ADO.NET invariant under which Orleans loads Microsoft.Data.Sqlite (see shared/ORLEANS-ADONET.md).</summary>
    private const string SqliteInvariant = "System.Data.SQLite";

    private const int DirectoryCacheSize = 10_000;

    /// <summary>
    /// Adds Nightshift's grains and services on the embedded SQLite store: the item store, grain
    /// state and reminders through Orleans' ADO.NET providers on the same file, and the simulated model.
    /// </summary>
    public static ISiloBuilder AddNightshift(this ISiloBuilder builder, Action<SqliteStoreOptions>? configureStore = null)
    {
        var services = builder.Services;
        services.AddNightshiftStore(configureStore);
        services.AddOptions<SimulatedModelOptions>().BindConfiguration(SimulatedModelOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<SimulatedModel>();
        services.AddSingleton<IModelResolver, ModelResolver>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, ItemStoreInitializer>();
        services.AddSingleton<LeaseRenewer>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => sp.GetRequiredService<LeaseRenewer>());
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, BatchResumer>();

        // Every item is a grain used for one call; Orleans' default directory cache (a million
        // entries) would remember each one's location and grow with the batch. The grains worth
        // caching, pools and batches, are few.
        services.Configure<GrainDirectoryOptions>(directory => directory.CacheSize = DirectoryCacheSize);

        builder.AddAdoNetGrainStorage(StorageNames.Grains, options => options
            .Configure<IOptions<SqliteStoreOptions>>((storage, sqlite) =>
            {
                storage.Invariant = SqliteInvariant;
                storage.ConnectionString = sqlite.Value.ConnectionString;
            }));
        builder.UseAdoNetReminderService(options => options
            .Configure<IOptions<SqliteStoreOptions>>((reminders, sqlite) =>
            {
                reminders.Invariant = SqliteInvariant;
                reminders.ConnectionString = sqlite.Value.ConnectionString;
            }));
        return builder;
    }

    /// <summary>
    /// The item store, batch submission and the price table, for a silo or for an API-only process (an Orleans client
    /// that writes submissions and reads results straight from the store).
    /// </summary>
    public static IServiceCollection AddNightshiftStore(this IServiceCollection services, Action<SqliteStoreOptions>? configureStore = null)
    {
        services.TryAddSingleton(TimeProvider.System);
        var store = services.AddOptions<SqliteStoreOptions>().BindConfiguration("Nightshift:Store").ValidateDataAnnotations().ValidateOnStart();
        if (configureStore is not null)
        {
            store.Configure(configureStore);
        }

        services.AddOptions<SubmissionOptions>().BindConfiguration(SubmissionOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<PriceTable>().BindConfiguration(PriceTable.Section).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PriceTable>, PriceTableValidator>());
        services.AddSingleton<SqliteItemStore>();
        services.AddSingleton<IItemStore>(sp => sp.GetRequiredService<SqliteItemStore>());
        services.AddSingleton<BatchSubmitter>();
        return services;
    }

    /// <summary>Applies the schema before any storage provider reads its queries or any grain runs.</summary>
    private sealed class ItemStoreInitializer(IItemStore store) : ILifecycleParticipant<ISiloLifecycle>
    {
        public void Participate(ISiloLifecycle lifecycle) =>
            lifecycle.Subscribe(nameof(ItemStoreInitializer), ServiceLifecycleStage.RuntimeInitialize, store.InitializeAsync);
    }
}
