using Nightshift.Batches;
using Nightshift.Pools;
using Nightshift.Submission;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Pools;

public sealed class SlowModelCluster : ClusterFixture
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["Nightshift:Simulated:LatencyMin"] = "00:00:00.010",
        ["Nightshift:Simulated:LatencyMax"] = "00:00:00.030",
    };
}

/// <summary>The pool grain in a real (in-process) cluster; the simulated model counts concurrent calls itself.</summary>
public sealed class PoolGrainTests(SlowModelCluster fixture) : IClassFixture<SlowModelCluster>
{
    private NightshiftCluster Cluster => fixture.Cluster;

    [Fact]
    public async Task Pool_NeverGrantsBeyondMaxRunning_AcrossBatches()
    {
        await Cluster.CreatePoolAsync("capped", maxRunning: 6);
        Cluster.Model.ResetPeak();

        var batches = new List<IBatchGrain>();
        foreach (var name in new[] { "cap-a", "cap-b", "cap-c" })
        {
            var result = await Cluster.Submitter.SubmitAsync(name, "capped", new BatchOptions(), Jsonl.Stream(Jsonl.Lines(150, name)), Ct);
            Assert.True(result.Accepted, result.Reason);
            batches.Add(Cluster.Grains.GetGrain<IBatchGrain>(name));
        }

        foreach (var batch in batches)
        {
            var status = await batch.WaitUntilFinishedAsync(TimeSpan.FromMinutes(2));
            Assert.Equal(150, status.Succeeded);
        }

        Assert.InRange(Cluster.Model.Peak, 6, 6);
    }

    [Fact]
    public async Task Pool_SharesFairly_ASmallBatchSubmittedLateIsNotStarved()
    {
        await Cluster.CreatePoolAsync("fair", maxRunning: 4);
        var big = Cluster.Grains.GetGrain<IBatchGrain>("fair-big");
        var small = Cluster.Grains.GetGrain<IBatchGrain>("fair-small");
        Assert.True((await Cluster.Submitter.SubmitAsync("fair-big", "fair", new BatchOptions(), Jsonl.Stream(Jsonl.Lines(600, "big")), Ct)).Accepted);
        await big.WaitUntilSucceededAsync(40);

        var bigBefore = (await big.GetStatus()).Succeeded;
        Assert.True((await Cluster.Submitter.SubmitAsync("fair-small", "fair", new BatchOptions(), Jsonl.Stream(Jsonl.Lines(100, "small")), Ct)).Accepted);
        await small.WaitUntilFinishedAsync(TimeSpan.FromSeconds(30), Cluster.Store);
        var bigDuring = (await big.GetStatus()).Succeeded - bigBefore;

        // Equal shares: while the small batch ran its 100 items, the big one ran about as many.
        Assert.InRange(bigDuring, 60, 150);
        Assert.True((await big.GetStatus()).Succeeded < 600, "the small batch finished only after the big one");
        await big.Cancel();
    }

    [Fact]
    public async Task Pool_RejectsASubmissionPastMaxQueued_AndWritesNothing()
    {
        await Cluster.CreatePoolAsync("bounded", maxRunning: 1, maxQueued: 150);
        var first = await Cluster.Submitter.SubmitAsync("queued-a", "bounded", new BatchOptions(), Jsonl.Stream(Jsonl.Lines(100, "a")), Ct);
        Assert.True(first.Accepted, first.Reason);

        var second = await Cluster.Submitter.SubmitAsync("queued-b", "bounded", new BatchOptions(), Jsonl.Stream(Jsonl.Lines(100, "b")), Ct);

        Assert.Equal(SubmissionRejection.QueueFull, second.Rejection);
        Assert.Contains("maxQueued of 150", second.Reason);
        Assert.Equal(0, (await Cluster.Store.CountAsync("queued-b", Ct)).Total);
        Assert.Equal(BatchState.NotFound, (await Cluster.Grains.GetGrain<IBatchGrain>("queued-b").GetStatus()).State);

        await Cluster.Grains.GetGrain<IBatchGrain>("queued-a").Cancel();
        var snapshot = await Cluster.Grains.GetGrain<IPoolGrain>("bounded").GetSnapshot();
        Assert.Equal(0, snapshot.Queued);
        var third = await Cluster.Submitter.SubmitAsync("queued-c", "bounded", new BatchOptions(), Jsonl.Stream(Jsonl.Lines(100, "c")), Ct);
        Assert.True(third.Accepted, third.Reason);
        await Cluster.Grains.GetGrain<IBatchGrain>("queued-c").Cancel();
    }

    [Fact]
    public async Task Cancel_StopsTheBatch_AndEveryItemEndsCancelledOrDone()
    {
        await Cluster.CreatePoolAsync("cancel", maxRunning: 2);
        var batch = Cluster.Grains.GetGrain<IBatchGrain>("cancel-me");
        Assert.True((await Cluster.Submitter.SubmitAsync("cancel-me", "cancel", new BatchOptions(), Jsonl.Stream(Jsonl.Lines(500)), Ct)).Accepted);
        await batch.WaitUntilSucceededAsync(10);

        await batch.Cancel();
        var status = await batch.WaitUntilFinishedAsync(TimeSpan.FromSeconds(10));

        Assert.Equal(BatchState.Cancelled, status.State);
        Assert.Equal(500, status.Succeeded + status.Cancelled);
        Assert.InRange(status.Cancelled, 400, 490);
        var counts = await Cluster.Store.CountAsync("cancel-me", Ct);
        Assert.Equal((0, 0), (counts.Pending, counts.Leased));
        Assert.Equal(status.Cancelled, counts.Cancelled);
        await Assert.ThrowsAsync<InvalidOperationException>(() => batch.Resume());
    }

    [Fact]
    public async Task Pause_HoldsTheBatch_AndResumeFinishesIt()
    {
        await Cluster.CreatePoolAsync("pause", maxRunning: 2);
        var batch = Cluster.Grains.GetGrain<IBatchGrain>("pause-me");
        Assert.True((await Cluster.Submitter.SubmitAsync("pause-me", "pause", new BatchOptions(), Jsonl.Stream(Jsonl.Lines(300)), Ct)).Accepted);
        await batch.WaitUntilSucceededAsync(10);

        await batch.Pause();
        await Task.Delay(300, Ct);
        var paused = await batch.GetStatus();
        await Task.Delay(500, Ct);
        var stillPaused = await batch.GetStatus();

        Assert.Equal(BatchState.Paused, stillPaused.State);
        Assert.Equal(paused.Succeeded, stillPaused.Succeeded);
        Assert.Equal(0, stillPaused.Running);

        // The items claimed ahead went back to pending (none stays leased), and every hot slot to the pool.
        var counts = await Cluster.Store.CountAsync("pause-me", Ct);
        Assert.Equal((0L, 300 - stillPaused.Succeeded), (counts.Leased, counts.Pending));
        Assert.Equal(0, (await Cluster.Grains.GetGrain<IPoolGrain>("pause").GetSnapshot()).Running);

        await batch.Resume();
        var done = await batch.WaitUntilFinishedAsync(TimeSpan.FromMinutes(1));
        Assert.Equal((BatchState.Completed, 300L), (done.State, done.Succeeded));
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
