using System.Net.Http.Json;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Durability;

/// <summary>
/// kill -9 of the one embedded silo (the real <c>run</c> command in a child process) while it calls the
/// loopback mock model, itself a separate process: the mock's own counts, which outlive the silo,
/// prove that nothing finished is called again and nothing is lost.
/// </summary>
public sealed class ProcessCrashTests : IAsyncLifetime
{
    private const int Items = 3_000;
    private const int MaxRunning = 32;

    private readonly RunWorkspace _run = new();
    private readonly HttpClient _http = new();
    private MockModelProcess? _mock;

    private MockModelProcess Mock => _mock ?? throw new InvalidOperationException("The mock model has not started.");

    public async ValueTask InitializeAsync()
    {
        _mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "40", "60"], Ct);
        await File.WriteAllTextAsync(_run.Input, Jsonl.Lines(Items, "crash"), Ct);
    }

    [Fact]
    public async Task KilledAtFortyPercent_ThenRunAgain_EveryItemHasOneResult_AndNoFinishedItemIsCalledTwice()
    {
        using (var first = Start())
        {
            await _run.WaitUntilSucceededAsync(first, Items * 4 / 10);
            first.Kill();
        }

        await FinishAndCheckAsync([await KillSnapshotAsync()]);
    }

    [Fact]
    public async Task FiveKillsAtRandomMoments_ThenRunAgain_EveryItemHasOneResult_AndNoFinishedItemIsCalledTwice()
    {
        var seed = Environment.TickCount;
        var random = new Random(seed);
        var kills = new List<KillSnapshot>();
        for (var kill = 0; kill < 5; kill++)
        {
            using var silo = Start();
            var already = (await _run.SucceededCustomIdsAsync()).Count;
            await _run.WaitUntilSucceededAsync(silo, already + random.Next(50, Items / 8));
            await Task.Delay(random.Next(0, 200), Ct);
            silo.Kill();
            kills.Add(await KillSnapshotAsync());
        }

        Assert.True(kills[^1].Done.Count < Items, $"seed {seed}: the batch finished before the last kill");
        await FinishAndCheckAsync(kills);
    }

    public async ValueTask DisposeAsync()
    {
        _mock?.Dispose();
        _http.Dispose();
        _run.Dispose();
        await Task.CompletedTask;
    }

    private SiloProcess Start() => _run.Start(new Dictionary<string, string>(),
        "--max-running", $"{MaxRunning}", "--endpoint", new Uri(Mock.BaseAddress, "v1").ToString(), "--model", "mock");

    /// <summary>What had finished (in the store) at a kill, and how often the mock had been called for each item by then.</summary>
    private async Task<KillSnapshot> KillSnapshotAsync() => new(await _run.SucceededCustomIdsAsync(), await CallsAsync());

    private async Task<Dictionary<string, int>> CallsAsync()
    {
        var stats = await _http.GetFromJsonAsync<JsonElement>(new Uri(Mock.BaseAddress, "stats"), Ct);
        return stats.GetProperty("calls").EnumerateObject().ToDictionary(p => p.Name, p => p.Value.GetInt32());
    }

    /// <summary>Runs the batch to its end and checks it against the mock's own counts.</summary>
    private async Task FinishAndCheckAsync(IReadOnlyList<KillSnapshot> kills)
    {
        using (var last = Start())
        {
            Assert.Equal(0, await last.WaitForExitAsync(TimeSpan.FromMinutes(2)));
            Assert.Contains("Resuming batch", last.Output);
        }

        var results = (await File.ReadAllLinesAsync(_run.Output, Ct)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(Enumerable.Range(0, Items).Select(i => $"crash-{i}"), results.Select(r => r.GetProperty("custom_id").GetString()));
        Assert.All(results, r => Assert.Equal(200, r.GetProperty("response").GetProperty("status_code").GetInt32()));

        var stats = await _http.GetFromJsonAsync<JsonElement>(new Uri(Mock.BaseAddress, "stats"), Ct);
        var calls = await CallsAsync();
        Assert.Equal(Items, calls.Count);
        Assert.All(kills[0].Done, id => Assert.Equal(1, calls[id]));
        foreach (var kill in kills)
        {
            // Finished before this kill: never called again after it.
            Assert.All(kill.Done, id => Assert.Equal(kill.Calls[id], calls[id]));
        }

        var repeated = calls.Values.Sum() - Items;
        Assert.True(repeated <= kills.Count * MaxRunning,
            $"{repeated} calls were repeated; at most the {MaxRunning} in flight at each of {kills.Count} kill(s) may be");
        Assert.InRange(stats.GetProperty("peak").GetInt32(), 1, MaxRunning);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private sealed record KillSnapshot(HashSet<string> Done, Dictionary<string, int> Calls);
}
