using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;
using Nightshift.Items;
using Nightshift.Models;
using Nightshift.Recovery;
using Nightshift.Storage;
using Nightshift.Submission;
using Orleans.Configuration;

namespace Nightshift.Hosting;

public static class NightshiftSiloBuilderExtensions
{
    private const int DirectoryCacheSize = 10_000;

    /// <summary>
    /// Batch submission (<see cref="IBatchSubmitter"/>) and the options it reads, for a silo or for an
    /// API-only process (an Orleans client that writes submissions straight to the item store).
    /// </summary>
    public static IServiceCollection AddNightshiftSubmission(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        services.AddOptions<SubmissionOptions>().BindConfiguration(SubmissionOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddOptions<PriceTable>().BindConfiguration(PriceTable.Section).ValidateOnStart();
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<PriceTable>, PriceTableValidator>());
        services.AddSingleton<BatchSubmitter>();
        services.AddSingleton<IBatchSubmitter>(sp => sp.GetRequiredService<BatchSubmitter>());
        return services;
    }

    /// <summary>
    /// Adds Nightshift's grains and services on the item store already registered: grain state and
    /// reminders through Orleans' ADO.NET providers on the store's database, and the simulated model.
    /// </summary>
    public static ISiloBuilder AddNightshiftGrains(this ISiloBuilder builder)
    {
        var services = builder.Services;
        services.AddOptions<SimulatedModelOptions>().BindConfiguration(SimulatedModelOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        services.AddSingleton<SimulatedModel>();
        services.AddNightshiftModels();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, ItemStoreInitializer>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, StartupRequeue>();
        services.AddSingleton<LeaseRenewer>();
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>>(sp => sp.GetRequiredService<LeaseRenewer>());
        services.AddSingleton<ILifecycleParticipant<ISiloLifecycle>, BatchResumer>();

        // Every item is a grain used for one call; Orleans' default directory cache (a million
        // entries) would remember each one's location and grow with the batch. The grains worth
        // caching, pools and batches, are few.
        services.Configure<GrainDirectoryOptions>(directory => directory.CacheSize = DirectoryCacheSize);

        builder.AddAdoNetGrainStorage(StorageNames.Grains, options => options
            .Configure<IOptions<ItemStoreOptions>>((storage, store) =>
            {
                storage.Invariant = store.Value.OrleansInvariant;
                storage.ConnectionString = store.Value.OrleansConnectionString;
            }));
        builder.UseAdoNetReminderService(options => options
            .Configure<IOptions<ItemStoreOptions>>((reminders, store) =>
            {
                reminders.Invariant = store.Value.OrleansInvariant;
                reminders.ConnectionString = store.Value.OrleansConnectionString;
            }));
        return builder;
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
