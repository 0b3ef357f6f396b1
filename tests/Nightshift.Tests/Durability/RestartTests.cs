using Nightshift.Batches;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Durability;

/// <summary>The one embedded silo dies and a new one starts on the same store: nobody touches the batch, yet it finishes.</summary>
public sealed class RestartTests : IDisposable
{
    private readonly TempDirectory _directory = new();

    [Fact]
    public async Task ARestartedSilo_ResumesARunningBatchByItself_WithinSeconds()
    {
        const int items = 600;
        var settings = new Dictionary<string, string>
        {
            ["Nightshift:Store:Path"] = Path.Combine(_directory.Path, "shared.db"),
            ["Nightshift:Simulated:LatencyMin"] = "00:00:00.020",
            ["Nightshift:Simulated:LatencyMax"] = "00:00:00.030",
        };
        var serviceId = $"restart-{Guid.NewGuid():n}";

        long doneAtKill;
        var first = await NightshiftCluster.StartAsync(settings, serviceId: serviceId);
        await using (first)
        {
            await first.CreatePoolAsync("restart", maxRunning: 4);
            Assert.True((await first.Submitter.SubmitAsync("restarted", "restart", new BatchOptions(), Jsonl.Stream(Jsonl.Lines(items)), Ct)).Accepted);
            var batch = first.Grains.GetGrain<IBatchGrain>("restarted");
            await batch.WaitUntilSucceededAsync(items / 5);

            var store = first.Store;
            await first.Cluster.KillSiloAsync(first.Cluster.Primary!, Ct);
            doneAtKill = (await store.CountAsync("restarted", Ct)).Succeeded;
        }

        Assert.InRange(doneAtKill, items / 5, items - 1);
        await using var second = await NightshiftCluster.StartAsync(settings, serviceId: serviceId);

        // Only the store is watched: no call to the batch grain wakes it up. Its reminder would
        // take up to a minute; the start-up task must bring it back in seconds.
        var counts = await Eventually.MatchesAsync(() => second.Store.CountAsync("restarted", Ct), counts => counts.Succeeded >= items,
            counts => $"the batch did not finish after the restart: {counts}", TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(50));

        Assert.Equal((0L, 0L, 0L), (counts.Pending, counts.Leased, counts.Failed));
        var status = await second.Grains.GetGrain<IBatchGrain>("restarted").WaitUntilFinishedAsync(TimeSpan.FromSeconds(10));
        Assert.Equal((BatchState.Completed, (long)items), (status.State, status.Succeeded));
    }

    public void Dispose() => _directory.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
