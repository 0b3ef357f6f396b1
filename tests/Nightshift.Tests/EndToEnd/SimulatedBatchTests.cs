using System.Diagnostics;
using System.Text.Json;
using Nightshift.Batches;
using Nightshift.Models;
using Nightshift.Results;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.EndToEnd;

public sealed class SteadyModelCluster : ClusterFixture
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["Nightshift:Simulated:LatencyMin"] = "00:00:00.050",
        ["Nightshift:Simulated:LatencyMax"] = "00:00:00.100",
    };
}

public sealed class SimulatedBatchTests(SteadyModelCluster fixture) : IClassFixture<SteadyModelCluster>
{
    private NightshiftCluster Cluster => fixture.Cluster;

    [Fact]
    public async Task TwoThousandItems_EverySucceedsExactlyOnce_AtTheCapButNeverAbove()
    {
        const int items = 2_000;
        const int maxRunning = 16;
        await Cluster.CreatePoolAsync("e2e", maxRunning);
        var input = Jsonl.Lines(items, "e2e");
        var callsBefore = Cluster.Model.Calls;
        Cluster.Model.ResetPeak();

        var result = await Cluster.Submitter.SubmitAsync("e2e-2000", "e2e", new BatchOptions(), Jsonl.Stream(input), Ct);
        Assert.True(result.Accepted, result.Reason);

        var batch = Cluster.Grains.GetGrain<IBatchGrain>("e2e-2000");
        var samples = new List<(TimeSpan At, int Running)>();
        var clock = Stopwatch.StartNew();
        BatchStatus status;
        while (!(status = await batch.GetStatus()).IsFinished)
        {
            samples.Add((clock.Elapsed, Cluster.Model.Current));
            await Task.Delay(5, Ct);
        }

        Assert.Equal((BatchState.Completed, items, 0L), (status.State, status.Succeeded, status.Failed));
        Assert.Equal(items, Cluster.Model.Calls - callsBefore);
        Assert.InRange(Cluster.Model.Peak, maxRunning, maxRunning);

        // Near the cap through the run: the middle 80% of the run, sampled from the model's side, on
        // average at least 80% of the cap in flight. (Each slot's cycle costs a few milliseconds beside
        // 50-100 ms calls, so the average sits near 92%; counting samples with 15 of 16 running instead
        // made a binomial tail of that, which failed on busy machines with nothing wrong.)
        var middle = samples.Where(s => s.At > clock.Elapsed * 0.1 && s.At < clock.Elapsed * 0.9).ToList();
        var average = middle.Average(s => s.Running);
        Assert.True(average >= maxRunning * 0.8, $"on average {average:0.0} of {maxRunning} calls were running ({middle.Count} samples)");

        var output = new MemoryStream();
        await BatchOutputWriter.WriteAsync(Cluster.Store.ReadResultsAsync("e2e-2000", Ct), "e2e-2000", output, Ct);
        var lines = System.Text.Encoding.UTF8.GetString(output.ToArray()).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var inputs = input.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(items, lines.Length);
        for (var i = 0; i < items; i++)
        {
            using var line = JsonDocument.Parse(lines[i]);
            var root = line.RootElement;
            Assert.Equal($"e2e-{i}", root.GetProperty("custom_id").GetString());
            Assert.Equal(200, root.GetProperty("response").GetProperty("status_code").GetInt32());
            var content = root.GetProperty("response").GetProperty("body").GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();
            Assert.Equal(SimulatedModel.ExpectedContent(Jsonl.Body(inputs[i])), content);
            Assert.Equal(JsonValueKind.Null, root.GetProperty("error").ValueKind);
        }
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
