using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.MockModel;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Cluster;

/// <summary>
/// Three real silo processes on one private PostgreSQL server form one cluster under one global cap,
/// calling the loopback mock model (a process of its own, which counts calls, their peak concurrency
/// and which connection each came on). The invariants are read from the mock, never from Nightshift.
/// </summary>
public sealed class PostgresClusterTests : IAsyncLifetime
{
    private const int Silos = 3;
    private const int MaxRunning = 20;
    private const int Items = 5_000;

    private ServeCluster _serve = null!;

    private SiloCluster Cluster => _serve.Silos;

    public async ValueTask InitializeAsync() => _serve = await ServeCluster.StartAsync(["--latency-ms", "20", "40"], Silos);

    public async ValueTask DisposeAsync()
    {
        if (_serve is not null)
        {
            await _serve.DisposeAsync();
        }
    }

    [Fact]
    public async Task ThreeSilos_KeepOneGlobalCap_RunEveryItemOnce_AndShareTheCalls()
    {
        var batch = await SubmitAsync("spread");

        await WaitUntilCompletedAsync(batch);

        var stats = await StatsAsync();
        Assert.InRange(stats.Peak, 1, MaxRunning);
        await AssertEveryItemSucceededOnceAsync(batch, stats, allowedRepeats: 0);

        // Each silo's share, by the connections the mock saw and /proc says each process holds.
        var mockPort = _serve.Mock.BaseAddress.Port;
        var perSilo = Cluster.Members
            .Select(member => TcpConnections.LocalPortsTo(member.Process.Id, mockPort).Sum(port => stats.CallsByClientPort.GetValueOrDefault(port)))
            .ToList();
        Assert.All(perSilo, calls => Assert.True(calls >= Items / 20, $"calls per silo: {string.Join(", ", perSilo)}"));
    }

    [Fact]
    public async Task KillingASilo_MidRun_LosesNothing_AndKeepsTheCap()
    {
        var batch = await SubmitAsync("kill");
        var pool = await PoolSiloAsync();
        await WaitForCallsAsync(Items * 3 / 10);

        var victim = Cluster.Members.First(member => !member.Is(pool));
        var before = await StatsAsync();
        victim.Kill();

        await WaitUntilCompletedAsync(batch);
        await AssertAfterKillAsync(batch, before);
    }

    [Fact]
    public async Task KillingThePoolsSilo_MidRun_LosesNothing_AndKeepsTheCap()
    {
        var batch = await SubmitAsync("pool-kill");
        var pool = await PoolSiloAsync();
        await WaitForCallsAsync(Items * 3 / 10);

        var victim = Cluster.Members.Single(member => member.Is(pool));
        var before = await StatsAsync();
        victim.Kill();

        await WaitUntilCompletedAsync(batch);
        await AssertAfterKillAsync(batch, before);
        Assert.False(victim.Is(await PoolSiloAsync()));
    }

    [Fact]
    public async Task RestartingPostgres_MidRun_IsRiddenOut()
    {
        var batch = await SubmitAsync("pg-restart");
        await WaitForCallsAsync(Items * 3 / 10);

        await _serve.Postgres.RestartAsync();

        await WaitUntilCompletedAsync(batch);
        var stats = await StatsAsync();
        Assert.InRange(stats.Peak, 1, MaxRunning);

        // A result whose commit was cut by the restart may be sent again; nothing is lost, no result is doubled.
        await AssertEveryItemSucceededOnceAsync(batch, stats, allowedRepeats: MaxRunning);
        Assert.All(Cluster.Members, member => Assert.False(member.Killed));
        Assert.Equal(HttpStatusCode.OK, (await Cluster.Any.Client.GetAsync("/health/ready", Ct)).StatusCode);
    }

    private async Task AssertAfterKillAsync(string batch, MockModelStats before)
    {
        var stats = await StatsAsync();
        Assert.InRange(stats.Peak, 1, MaxRunning);

        // Items finished before the kill are never called again; only those in flight at the kill repeat.
        var finishedBefore = before.Calls.Keys.ToHashSet();
        await AssertEveryItemSucceededOnceAsync(batch, stats, allowedRepeats: MaxRunning);
        Assert.True(stats.Calls.Count(call => call.Value > 1 && finishedBefore.Contains(call.Key)) <= MaxRunning);
    }

    private async Task AssertEveryItemSucceededOnceAsync(string batch, MockModelStats stats, int allowedRepeats)
    {
        var results = (await Cluster.Any.Client.GetStringAsync($"/v1/batches/{batch}/results", Ct))
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => JsonDocument.Parse(line).RootElement)
            .ToList();
        var ids = results.Select(result => result.GetProperty("custom_id").GetString()!).ToList();

        Assert.Equal(Items, ids.Count);
        Assert.Equal(Items, ids.Distinct().Count());
        Assert.All(results, result => Assert.Equal(200, result.GetProperty("response").GetProperty("status_code").GetInt32()));
        Assert.Equal(ids.ToHashSet(), stats.Calls.Keys.ToHashSet());
        Assert.True(stats.Calls.Values.Sum() - Items <= allowedRepeats, $"{stats.Calls.Values.Sum() - Items} repeated calls");
    }

    private async Task<string> SubmitAsync(string prefix)
    {
        var client = Cluster.Any.Client;
        Assert.Equal(HttpStatusCode.OK, (await client.PutAsync("/v1/pools/p", new StringContent(_serve.PoolJson(MaxRunning), Encoding.UTF8, "application/json"), Ct)).StatusCode);
        // A killed silo's slots stay counted for the lease (30 s) and the attempt timeout: the calls take 40 ms.
        var created = await client.PostAsync("/v1/batches?pool=p&attemptTimeoutSeconds=5", new StringContent(Jsonl.Lines(Items, prefix), Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        return (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
    }

    private async Task<string?> PoolSiloAsync() =>
        (await Cluster.Any.Client.GetFromJsonAsync<JsonElement>("/v1/pools/p", Ct)).GetProperty("silo").GetString();

    private Task WaitForCallsAsync(long calls) =>
        Eventually.MatchesAsync(StatsAsync, stats => stats.Total >= calls,
            stats => $"{stats.Total} calls, fewer than {calls}. Output:\n{Cluster.Output}", period: TimeSpan.FromMilliseconds(50));

    private Task WaitUntilCompletedAsync(string batch) =>
        Eventually.MatchesAsync(async () =>
        {
            try
            {
                var status = await Cluster.Any.Client.GetFromJsonAsync<JsonElement>($"/v1/batches/{batch}", Ct);
                return status.GetProperty("state").GetString() == "completed" && status.GetProperty("counts").GetProperty("running").GetInt64() == 0;
            }
            catch (HttpRequestException)
            {
                // The member answering may be between a lost connection and its retry.
                return false;
            }
        }, completed => completed, _ => $"batch {batch} did not complete. Output:\n{Cluster.Output}", TimeSpan.FromSeconds(120), TimeSpan.FromMilliseconds(200));

    private Task<MockModelStats> StatsAsync() => _serve.StatsAsync();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
