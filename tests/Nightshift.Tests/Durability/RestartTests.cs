using Nightshift.Batches;
using Nightshift.Storage;
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

    [Fact]
    public async Task ABatchWhoseSubmitterDiedAfterTheCommit_StartsFromTheCatalogue_WhenCalled_AndAfterARestartByItself()
    {
        // The state a crash between checkpoint 1 (items and catalogue row committed) and checkpoint 2
        // (the batch grain started) leaves: the items and the spec in the store, no grain state.
        var settings = new Dictionary<string, string> { ["Nightshift:Store:Path"] = Path.Combine(_directory.Path, "orphans.db") };
        var serviceId = $"orphans-{Guid.NewGuid():n}";
        var options = new BatchOptions { MaxAttempts = 3, Priority = 2 };
        var first = await NightshiftCluster.StartAsync(settings, serviceId: serviceId);
        await using (first)
        {
            await first.CreatePoolAsync("orphans", maxRunning: 4);
            await IngestOnlyAsync(first.Store, "called", "orphans", 30, options);
            await IngestOnlyAsync(first.Store, "untouched", "orphans", 40, options);

            var called = await first.Grains.GetGrain<IBatchGrain>("called").WaitUntilFinishedAsync(TimeSpan.FromSeconds(30), first.Store);
            Assert.Equal((BatchState.Completed, 30L, "orphans"), (called.State, called.Succeeded, called.Pool));
        }

        // Nobody calls the other one: the start-up resumer finds its items and its grain starts itself.
        await using var second = await NightshiftCluster.StartAsync(settings, serviceId: serviceId);
        var counts = await Eventually.MatchesAsync(() => second.Store.CountAsync("untouched", Ct), counts => counts.Succeeded == 40,
            counts => $"the orphaned batch did not run after the restart: {counts}", TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(50));
        Assert.Equal((0L, 0L), (counts.Pending, counts.Failed));
        var status = await second.Grains.GetGrain<IBatchGrain>("untouched").WaitUntilFinishedAsync(TimeSpan.FromSeconds(10));
        Assert.Equal((BatchState.Completed, 40L), (status.State, status.Succeeded));
    }

    public void Dispose() => _directory.Dispose();

    /// <summary>What the submitter writes before it starts the batch grain, and nothing more.</summary>
    private static async Task IngestOnlyAsync(IItemStore store, string batchId, string pool, int items, BatchOptions options)
    {
        await using var session = await store.BeginIngestAsync(batchId, pool, Ct);
        for (var index = 0; index < items; index++)
        {
            Assert.Null(await session.AddAsync(new ItemRequest(index, $"{batchId}-{index}", "POST", "/v1/chat/completions",
                """{"model":"nightshift-sim","messages":[{"role":"user","content":"hi"}]}"""), Ct));
        }

        await session.CommitAsync(options, fingerprint: null, Ct);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
