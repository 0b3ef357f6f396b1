using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Nightshift.Items;
using Nightshift.Models;
using Nightshift.Recovery;
using Nightshift.Storage;
using Nightshift.Storage.Postgres;
using Nightshift.Storage.Sqlite;
using Nightshift.Submission;
using Orleans.Configuration;

namespace Nightshift.Hosting;

public static class NightshiftSiloBuilderExtensions
{
    /// <summary>The ADO.NET invariant under which Orleans loads Microsoft.Data.Sqlite (see shared/ORLEANS-ADONET.md).</summary>
    private const string SqliteInvariant = "System.Data.SQLite";

    /// <summary>The ADO.NET invariant under which Orleans loads Npgsql.</summary>
    public const string PostgresInvariant = "Npgsql";

    private const string StoreSection = "Nightshift:Store";

    private const int DirectoryCacheSize = 10_000;

    /// <summary>
    /// Adds Nightshift's grains and services on the embedded SQLite store: the item store, grain
    /// state and reminders through Orleans' ADO.NET providers on the same file, and the simulated model.
    /// </summary>
    public static ISiloBuilder AddNightshift(this ISiloBuilder builder, Action<SqliteStoreOptions>? configureStore = null)
    {
        builder.Services.AddNightshiftStore(configureStore);
        builder.AddNightshiftGrains(SqliteInvariant, sp => sp.GetRequiredService<IOptions<SqliteStoreOptions>>().Value.ConnectionString);
        return builder;
    }

    /// <summary>
    /// Adds Nightshift's grains and services on a PostgreSQL database shared by the cluster: the item
    /// store, grain state and reminders (clustering is the host's to configure, with the same database).
    /// </summary>
    public static ISiloBuilder AddNightshiftOnPostgres(this ISiloBuilder builder, string connectionString)
    {
        builder.Services.AddNightshiftPostgresStore(connectionString);
        var providerConnectionString = PostgresItemStore.ConnectionStringFor(connectionString);
        builder.AddNightshiftGrains(PostgresInvariant, _ => providerConnectionString);
        return builder;
    }

    /// <summary>
    /// The item store and batch submission, for a silo or for an API-only process (an Orleans client
    /// that writes submissions and reads results straight from the store).
    /// </summary>
    public static IServiceCollection AddNightshiftStore(this IServiceCollection services, Action<SqliteStoreOptions>? configureStore = null)
    {
        var store = services.AddOptions<SqliteStoreOptions>().BindConfiguration(StoreSection).ValidateDataAnnotations().ValidateOnStart();
        if (configureStore is not null)
        {
            store.Configure(configureStore);
        }

        services.AddSingleton<SqliteItemStore>();
        services.AddSingleton<IItemStore>(sp => sp.GetRequiredService<SqliteItemStore>());
        return services.AddSubmission();
    }

    /// <summary>The PostgreSQL item store and batch submission, for a silo or an API-only process.</summary>
    public static IServiceCollection AddNightshiftPostgresStore(this IServiceCollection services, string connectionString)
    {
        services.AddOptions<PostgresStoreOptions>().BindConfiguration(StoreSection)
            .Configure(options => options.ConnectionString = connectionString)
            .ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<PostgresItemStore>();
        services.AddSingleton<IItemStore>(sp => sp.GetRequiredService<PostgresItemStore>());
        return services.AddSubmission();
    }

    private static IServiceCollection AddSubmission(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.AddOptions<SubmissionOptions>().BindConfiguration(SubmissionOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<PriceTable>().BindConfiguration(PriceTable.Section).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PriceTable>, PriceTableValidator>());
        services.AddSingleton<BatchSubmitter>();
        return services;
    }

    private static void AddNightshiftGrains(this ISiloBuilder builder, string invariant, Func<IServiceProvider, string> connectionString)
    {
        var services = builder.Services;
        services.AddOptions<SimulatedModelOptions>().BindConfiguration(SimulatedModelOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<SimulatedModel>();
        services.AddNightshiftModels();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, ItemStoreInitializer>();
        services.AddSingleton<LeaseRenewer>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => sp.GetRequiredService<LeaseRenewer>());
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, BatchResumer>();

        // Every item is a grain used for one call; Orleans' default directory cache (a million
        // entries) would remember each one's location and grow with the batch. The grains worth
        // caching, pools and batches, are few.
        services.Configure<GrainDirectoryOptions>(directory => directory.CacheSize = DirectoryCacheSize);

        builder.AddAdoNetGrainStorage(StorageNames.Grains, options => options
            .Configure<IServiceProvider>((storage, sp) =>
            {
                storage.Invariant = invariant;
                storage.ConnectionString = connectionString(sp);
            }));
        builder.UseAdoNetReminderService(options => options
            .Configure<IServiceProvider>((reminders, sp) =>
            {
                reminders.Invariant = invariant;
                reminders.ConnectionString = connectionString(sp);
            }));
    }

    /// <summary>
    /// Applies the schema before anything else starts: clustering reads its queries as membership
    /// starts, grain storage and reminders theirs later, and grains need the item table.
    /// </summary>
    private sealed class ItemStoreInitializer(IItemStore store) : ILifecycleParticipant<ISiloLifecycle>
    {
        public void Participate(ISiloLifecycle lifecycle) =>
            lifecycle.Subscribe(nameof(ItemStoreInitializer), ServiceLifecycleStage.First, store.InitializeAsync);
    }
}
