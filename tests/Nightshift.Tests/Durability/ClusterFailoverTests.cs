using Nightshift.Batches;
using Nightshift.MockModel;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Storage;
using Nightshift.Tests.Fixtures;
using Orleans.TestingHost;

namespace Nightshift.Tests.Durability;

/// <summary>
/// Three silos (an in-process Orleans test cluster on one SQLite file) calling the loopback mock model,
/// which counts concurrent calls across all of them. A silo is killed without warning mid-batch.
/// </summary>
public sealed class ClusterFailoverTests : IAsyncLifetime
{
    private const int Items = 1_200;
    private const int MaxRunning = 12;

    private NightshiftCluster? _cluster;
    private MockModelServer? _mock;

    private NightshiftCluster Cluster => _cluster ?? throw new InvalidOperationException("The cluster has not started.");

    private MockModelServer Mock => _mock ?? throw new InvalidOperationException("The mock model has not started.");

    public async ValueTask InitializeAsync()
    {
        _mock = await MockModelServer.StartAsync(new MockModelOptions { LatencyMin = TimeSpan.FromMilliseconds(40), LatencyMax = TimeSpan.FromMilliseconds(60) }, Ct);
        _cluster = await NightshiftCluster.StartAsync(silos: 3);
    }

    [Fact]
    public async Task KillingThePoolsSilo_WhileLongCallsRun_NeverLetsMoreThanMaxRunningCallsRun_AndEveryItemSucceedsOnce()
    {
        // Calls outlast the failover, so the new pool activation must learn of the calls still
        // running on the live silos (their renewals) before it grants anything.
        const int items = 144;
        const int maxRunning = 24;
        await using var slow = await MockModelServer.StartAsync(new MockModelOptions { LatencyMin = TimeSpan.FromSeconds(2.5), LatencyMax = TimeSpan.FromSeconds(3.5) }, Ct);
        var (pool, poolSilo) = await PoolAwayFromThePrimaryAsync(slow, maxRunning);
        var batch = await SubmitAsync("pool-failover", pool, items);
        await batch.WaitUntilSucceededAsync(maxRunning);

        await Cluster.Cluster.KillSiloAsync(poolSilo, Ct);
        var status = await batch.WaitUntilFinishedAsync(TimeSpan.FromMinutes(3), Cluster.Store);

        await AssertEveryItemSucceededOnceAsync(status, batch.GetPrimaryKeyString(), slow, items, maxRunning);
        var snapshot = await Cluster.Grains.GetGrain<IPoolGrain>(pool).GetSnapshot();
        Assert.NotEqual(poolSilo.SiloAddress.ToString(), snapshot.Silo);
    }

    [Fact]
    public async Task KillingTheBatchsSilo_TheBatchResumesElsewhere_AndEveryItemSucceedsOnce()
    {
        var (pool, _) = await PoolAwayFromThePrimaryAsync(Mock, MaxRunning);
        IBatchGrain batch;
        SiloHandle batchSilo;
        for (var attempt = 0; ; attempt++)
        {
            batch = await SubmitAsync($"batch-failover-{attempt}", pool, Items);
            var silo = (await batch.GetStatus()).Silo;
            var handle = Cluster.Cluster.Silos.Single(s => s.SiloAddress.ToString() == silo);
            if (handle != Cluster.Cluster.Primary)
            {
                batchSilo = handle;
                break;
            }

            // The test cluster's primary holds its membership and cannot be killed: try another batch.
            await batch.Cancel();
            await batch.WaitUntilFinishedAsync(TimeSpan.FromSeconds(30));
            Mock.Reset();
            Assert.True(attempt < 20, "every batch landed on the primary silo");
        }

        await batch.WaitUntilSucceededAsync(Items * 3 / 10);
        await Cluster.Cluster.KillSiloAsync(batchSilo, Ct);
        var status = await batch.WaitUntilFinishedAsync(TimeSpan.FromMinutes(2), Cluster.Store);

        await AssertEveryItemSucceededOnceAsync(status, batch.GetPrimaryKeyString());
        Assert.NotEqual(batchSilo.SiloAddress.ToString(), status.Silo);
    }

    [Fact]
    public async Task StoppingASiloGracefully_LeavesNothingLeased_AndEveryItemSucceedsOnce()
    {
        var (pool, _) = await PoolAwayFromThePrimaryAsync(Mock, MaxRunning);
        var batch = await SubmitAsync("graceful", pool, Items);
        await batch.WaitUntilSucceededAsync(Items * 3 / 10);

        var secondary = Cluster.Cluster.SecondarySilos[0];
        await Cluster.Cluster.StopSiloAsync(secondary, Ct);
        var status = await batch.WaitUntilFinishedAsync(TimeSpan.FromMinutes(2), Cluster.Store);

        await AssertEveryItemSucceededOnceAsync(status, batch.GetPrimaryKeyString());
        Assert.Equal(0, (await Cluster.Store.CountAsync(batch.GetPrimaryKeyString(), Ct)).Leased);
    }

    public async ValueTask DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }

        if (_mock is not null)
        {
            await _mock.DisposeAsync();
        }
    }

    /// <summary>A pool with short leases whose grain is not on the primary silo (which the test cluster cannot lose).</summary>
    private async Task<(string Pool, SiloHandle Silo)> PoolAwayFromThePrimaryAsync(MockModelServer mock, int maxRunning)
    {
        for (var attempt = 0; attempt < 30; attempt++)
        {
            var name = $"failover-{Guid.NewGuid():n}";
            var pool = Cluster.Grains.GetGrain<IPoolGrain>(name);
            await pool.Configure(new PoolConfig
            {
                MaxRunning = maxRunning,
                LeaseDuration = TimeSpan.FromSeconds(3),
                Model = new ModelBinding { Provider = OpenAiCompatibleProvider.ProviderName, Endpoint = new Uri(mock.BaseAddress, "v1").ToString(), Model = "mock" },
            });
            var silo = (await pool.GetSnapshot()).Silo;
            var handle = Cluster.Cluster.Silos.Single(s => s.SiloAddress.ToString() == silo);
            if (handle != Cluster.Cluster.Primary)
            {
                return (name, handle);
            }
        }

        throw new InvalidOperationException("every pool landed on the primary silo");
    }

    private async Task<IBatchGrain> SubmitAsync(string batchId, string pool, int items)
    {
        // A dead silo's slots stay counted for the lease and the attempt timeout (its calls may still be
        // running): the calls here take at most 3.5 s.
        var options = new BatchOptions { AttemptTimeout = TimeSpan.FromSeconds(8) };
        var result = await Cluster.Submitter.SubmitAsync(batchId, pool, options, Jsonl.Stream(Jsonl.Lines(items, batchId)), Ct);
        Assert.True(result.Accepted, result.Reason);
        return Cluster.Grains.GetGrain<IBatchGrain>(batchId);
    }

    private Task AssertEveryItemSucceededOnceAsync(BatchStatus status, string batchId) =>
        AssertEveryItemSucceededOnceAsync(status, batchId, Mock, Items, MaxRunning);

    private async Task AssertEveryItemSucceededOnceAsync(BatchStatus status, string batchId, MockModelServer mock, int items, int maxRunning)
    {
        Assert.Equal((BatchState.Completed, (long)items, 0L), (status.State, status.Succeeded, status.Failed));
        var results = new List<ItemResult>();
        await foreach (var result in Cluster.Store.ReadResultsAsync(batchId, Ct))
        {
            results.Add(result);
        }

        Assert.Equal(Enumerable.Range(0, items).Select(i => $"{batchId}-{i}"), results.Select(r => r.CustomId));
        Assert.All(results, r => Assert.Equal(ItemState.Succeeded, r.State));

        var stats = mock.Stats;
        Assert.InRange(stats.Peak, 1, maxRunning);
        var calls = results.Select(r => stats.Calls.GetValueOrDefault(r.CustomId)).ToList();
        Assert.All(calls, count => Assert.True(count >= 1));

        // Calls repeated: at most those in flight on the silo that went away.
        Assert.InRange(calls.Sum() - items, 0, maxRunning);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
