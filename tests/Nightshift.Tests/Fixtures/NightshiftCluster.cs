using Microsoft.Extensions.DependencyInjection;
using Nightshift.Hosting;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Silo.Hosting;
using Nightshift.Storage;
using Nightshift.Submission;
using Orleans.TestingHost;

namespace Nightshift.Tests.Fixtures;

/// <summary>
/// An in-process Orleans test cluster of one silo on a real SQLite file in a temporary folder,
/// removed on dispose, or on a PostgreSQL database when the settings name one
/// (<c>Nightshift:Store:ConnectionString</c>). Settings are configuration keys (e.g. <c>Nightshift:Simulated:LatencyMin</c>).
/// </summary>
public sealed class NightshiftCluster : IAsyncDisposable
{
    private readonly TempDirectory _directory;

    private NightshiftCluster(TestCluster cluster, TempDirectory directory)
    {
        Cluster = cluster;
        _directory = directory;
    }

    public TestCluster Cluster { get; }

    public IGrainFactory Grains => Cluster.GrainFactory;

    public string StorePath => Path.Combine(_directory.Path, "nightshift.db");

    public IServiceProvider SiloServices => ((InProcessSiloHandle)Cluster.Primary!).SiloHost.Services;

    /// <summary>The silo's simulated model, which counts the calls it serves.</summary>
    public SimulatedModel Model => SiloServices.GetRequiredService<SimulatedModel>();

    public IItemStore Store => SiloServices.GetRequiredService<IItemStore>();

    public BatchSubmitter Submitter => SiloServices.GetRequiredService<BatchSubmitter>();

    /// <param name="settings">Configuration keys for every silo; they may name another store file.</param>
    /// <param name="silos">How many silos.</param>
    /// <param name="serviceId">Fixed for a cluster that must find an earlier cluster's grain state; random by default.</param>
    public static async Task<NightshiftCluster> StartAsync(IReadOnlyDictionary<string, string>? settings = null, short silos = 1, string? serviceId = null)
    {
        var directory = new TempDirectory();
        var builder = new TestClusterBuilder(silos);
        if (serviceId is not null)
        {
            builder.Options.ServiceId = serviceId;
        }

        builder.Properties["Nightshift:Store:Path"] = Path.Combine(directory.Path, "nightshift.db");

        // Several silos share the file: a silo starting must not take the others' leases for dead ones.
        builder.Properties["Nightshift:Store:RecoverLeasesAtStart"] = (silos == 1).ToString();
        foreach (var (key, value) in settings ?? new Dictionary<string, string>())
        {
            builder.Properties[key] = value;
        }

        builder.AddSiloBuilderConfigurator<SiloConfigurator>();
        var cluster = builder.Build();
        await cluster.DeployAsync();
        return new NightshiftCluster(cluster, directory);
    }

    public Task CreatePoolAsync(string name, int maxRunning, long maxQueued = 10_000_000) =>
        Grains.GetGrain<IPoolGrain>(name).Configure(new PoolConfig { MaxRunning = maxRunning, MaxQueued = maxQueued });

    public async ValueTask DisposeAsync()
    {
        await Cluster.StopAllSilosAsync();
        await Cluster.DisposeAsync();
        _directory.Dispose();
    }

    /// <summary>On the PostgreSQL database <c>Nightshift:Store:ConnectionString</c> names, when a setting gives one; else on the SQLite file.</summary>
    private sealed class SiloConfigurator : ISiloConfigurator
    {
        public void Configure(ISiloBuilder siloBuilder)
        {
            siloBuilder.Services.AddNightshiftStore(siloBuilder.Configuration);
            siloBuilder.AddNightshiftGrains();
        }
    }
}
