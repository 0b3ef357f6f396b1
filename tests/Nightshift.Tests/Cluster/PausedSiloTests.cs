using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.MockModel;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Cluster;

/// <summary>
/// Two real <c>serve</c> processes on one private PostgreSQL server; one of them is frozen with SIGSTOP
/// (a long GC pause, a frozen VM) while its calls run. Its calls keep running at the provider, so the
/// cap must hold as the mock model process counts it, which enforces no cap of its own.
/// </summary>
public sealed class PausedSiloTests : IAsyncLifetime
{
    private const int MaxRunning = 8;
    private const int ItemsPerBatch = 8;

    private ServeCluster _serve = null!;

    // A silo that stops answering is declared dead within seconds, so the frozen silo's batch moves
    // to the live one (as a pause of minutes would do with the default probes) and runs there.
    public async ValueTask InitializeAsync() => _serve = await ServeCluster.StartAsync(["--latency-ms", "15000"], 2, new Dictionary<string, string>
    {
        ["Orleans__Membership__ProbeTimeout"] = "00:00:01",
        ["Orleans__Membership__NumMissedProbesLimit"] = "2",
    });

    public async ValueTask DisposeAsync()
    {
        if (_serve is not null)
        {
            await _serve.DisposeAsync();
        }
    }

    [Fact]
    public async Task APausedSilosCalls_StayCounted_SoTheProviderNeverSeesMoreThanMaxRunning()
    {
        // Leases of 2 s and calls of 15 s: the pause outlasts the frozen silo's leases and its membership
        // (its batch moves to the live silo and wants its items run again) but not its calls, nor their
        // attempt timeout of 20 s. Two batches share the pool: one beside the pool, one on the silo frozen.
        var (live, paused, batches) = await SubmitOnBothSilosAsync();
        await Eventually.MatchesAsync(StatsAsync,
            stats => stats.Current == MaxRunning && TcpConnections.LocalPortsTo(paused.Process.Id, _serve.Mock.BaseAddress.Port).Count > 0,
            stats => $"{stats.Current} calls in flight, {TcpConnections.LocalPortsTo(paused.Process.Id, _serve.Mock.BaseAddress.Port).Count} of them from the silo to pause");

        paused.Pause();
        await Task.Delay(TimeSpan.FromSeconds(12), Ct);
        paused.Continue();

        foreach (var batch in batches)
        {
            await Eventually.MatchesAsync(() => live.Client.GetFromJsonAsync<JsonElement>($"/v1/batches/{batch}", Ct),
                status => status.GetProperty("state").GetString() == "completed",
                status => $"batch not completed: {status}. Output:\n{live.Process.Output}\n{paused.Process.Output}",
                TimeSpan.FromSeconds(120), TimeSpan.FromMilliseconds(200));
        }

        var final = await StatsAsync();
        Assert.InRange(final.Peak, 1, MaxRunning);

        // Every item ended once, in success; the paused silo's calls may have been made twice.
        foreach (var batch in batches)
        {
            var results = (await live.Client.GetStringAsync($"/v1/batches/{batch}/results", Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(ItemsPerBatch, results.Length);
            Assert.All(results, line => Assert.Equal(200, JsonDocument.Parse(line).RootElement.GetProperty("response").GetProperty("status_code").GetInt32()));
        }

        Assert.Equal(2 * ItemsPerBatch, final.Calls.Count);
    }

    /// <summary>
    /// One pool and a batch submitted through each silo, until the pool and the first batch are on the
    /// first silo and the second batch on the other (Orleans places a grain where it is first called, mostly).
    /// </summary>
    private async Task<(SiloCluster.Member Live, SiloCluster.Member Other, string[] Batches)> SubmitOnBothSilosAsync()
    {
        var (first, second) = (_serve.Silos.Members[0], _serve.Silos.Members[1]);
        for (var attempt = 0; ; attempt++)
        {
            var name = $"p{attempt}";
            var pool = new StringContent(_serve.PoolJson(MaxRunning, leaseSeconds: 2), Encoding.UTF8, "application/json");
            Assert.Equal(HttpStatusCode.OK, (await first.Client.PutAsync($"/v1/pools/{name}", pool, Ct)).StatusCode);
            string[] batches = [await SubmitAsync(first, name, $"{name}a"), await SubmitAsync(second, name, $"{name}b")];
            var poolSilo = (await first.Client.GetFromJsonAsync<JsonElement>($"/v1/pools/{name}", Ct)).GetProperty("silo").GetString();
            var silos = new List<string?>();
            foreach (var batch in batches)
            {
                silos.Add((await first.Client.GetFromJsonAsync<JsonElement>($"/v1/batches/{batch}", Ct)).GetProperty("silo").GetString());
            }

            if (first.Is(poolSilo) && first.Is(silos[0]) && second.Is(silos[1]))
            {
                return (first, second, batches);
            }

            Assert.True(attempt < 10, $"the pool and the batches never landed as asked: {poolSilo}, {string.Join(", ", silos)}");
            foreach (var batch in batches)
            {
                Assert.Equal(HttpStatusCode.OK, (await first.Client.PostAsync($"/v1/batches/{batch}/cancel", null, Ct)).StatusCode);
            }

            await Eventually.MatchesAsync(StatsAsync, stats => stats.Current == 0, stats => $"{stats.Current} calls of cancelled batches still in flight");
            await _serve.ResetStatsAsync();
        }
    }

    private static async Task<string> SubmitAsync(SiloCluster.Member member, string pool, string prefix)
    {
        var created = await member.Client.PostAsync($"/v1/batches?pool={pool}&attemptTimeoutSeconds=20",
            new StringContent(Jsonl.Lines(ItemsPerBatch, prefix), Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        return (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
    }

    private Task<MockModelStats> StatsAsync() => _serve.StatsAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
