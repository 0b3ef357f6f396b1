using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Cluster;

/// <summary>
/// One long batch on three real <c>serve</c> processes and a private PostgreSQL server, while a seeded
/// schedule kills silos with SIGKILL (and starts replacements), freezes them with SIGSTOP and SIGCONT,
/// restarts PostgreSQL with <c>pg_ctl</c>, and the mock model answers some calls with 500s and 429s.
/// Everything is checked from outside: the mock's own counts and the batch's results.
/// </summary>
public sealed class ChaosTests
{
    private const int MaxRunning = 10;
    private const int Items = 500;
    private const int Seed = 20261202;

    [Fact]
    public async Task KillsPausesAndAStoreRestart_LoseNothing_RunEachItemToOneResult_AndKeepTheCap()
    {
        await using var serve = await ServeCluster.StartAsync(
            ["--latency-ms", "200", "800", "--fault-500", "0.03", "--fault-429", "0.02", "--retry-after-s", "1", "--seed", $"{Seed}"], 3,
            new Dictionary<string, string>
            {
                ["Orleans__Membership__ProbeTimeout"] = "00:00:01",
                ["Orleans__Membership__NumMissedProbesLimit"] = "2",
            });
        var silos = serve.Silos;
        var pool = new StringContent(serve.PoolJson(MaxRunning, leaseSeconds: 4), Encoding.UTF8, "application/json");
        Assert.Equal(HttpStatusCode.OK, (await silos.Any.Client.PutAsync("/v1/pools/chaos", pool, Ct)).StatusCode);
        var created = await silos.Any.Client.PostAsync("/v1/batches?pool=chaos&attemptTimeoutSeconds=10&maxAttempts=20",
            new StringContent(Jsonl.Lines(Items, "chaos"), Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var batch = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;

        // The faults, at seeded moments a few seconds apart, while the batch runs. Each adds the calls in
        // flight at its moment to what may be called twice.
        var random = new Random(Seed);
        var paused = new HashSet<SiloCluster.Member>();
        var schedule = new List<string>();
        var mayRepeat = 0;
        await Eventually.HoldsAsync(async () => (await serve.StatsAsync()).Total >= Items / 10, () => "the batch never started");
        for (var fault = 0; fault < 6; fault++)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(random.Next(2_000, 5_000)), Ct);
            var running = silos.Members.Where(member => !member.Killed && !member.Process.HasExited && !paused.Contains(member)).ToList();
            mayRepeat += (await serve.StatsAsync()).Current;
            switch (random.Next(3))
            {
                case 0 when running.Count > 1:
                    var victim = running[random.Next(running.Count)];
                    victim.Kill();
                    schedule.Add($"kill -9 silo {silos.Members.ToList().IndexOf(victim)}");
                    await silos.AddAsync();
                    break;
                case 1 when running.Count > 1:
                    var frozen = running[random.Next(running.Count)];
                    var pause = TimeSpan.FromMilliseconds(random.Next(1_000, 6_000));
                    frozen.Pause();
                    paused.Add(frozen);
                    schedule.Add($"SIGSTOP silo {silos.Members.ToList().IndexOf(frozen)} for {pause.TotalSeconds:F1} s");
                    await Task.Delay(pause, Ct);
                    frozen.Continue();
                    paused.Remove(frozen);
                    break;
                default:
                    await serve.Postgres.RestartAsync();
                    schedule.Add("pg_ctl restart");
                    break;
            }
        }

        var done = await Eventually.MatchesAsync(() => ViewAsync(silos, batch), view => view?.GetProperty("state").GetString() == "completed",
            view => $"batch not completed after {string.Join("; ", schedule)}: {view}. Output:\n{silos.Output}", TimeSpan.FromSeconds(240), TimeSpan.FromMilliseconds(500));
        TestContext.Current.TestOutputHelper?.WriteLine($"faults: {string.Join("; ", schedule)}");

        // Nothing lost, and one result per item, every one a success.
        Assert.Equal(Items, done!.Value.GetProperty("counts").GetProperty("succeeded").GetInt32());
        var results = (await LiveMember(silos).Client.GetStringAsync($"/v1/batches/{batch}/results", Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => JsonDocument.Parse(line).RootElement).ToList();
        Assert.Equal(Items, results.Count);
        Assert.Equal(Items, results.Select(result => result.GetProperty("custom_id").GetString()).Distinct().Count());
        Assert.All(results, result => Assert.Equal(200, result.GetProperty("response").GetProperty("status_code").GetInt32()));

        // From the mock: every item was called, the cap held, and a call was answered twice only for the
        // calls a fault cut off.
        var stats = await serve.StatsAsync();
        Assert.Equal(Items, stats.Calls.Count);
        Assert.InRange(stats.Peak, 1, MaxRunning);
        TestContext.Current.TestOutputHelper?.WriteLine($"{stats.Succeeded - Items} answered twice, at most {mayRepeat} allowed; peak {stats.Peak}");
        Assert.InRange(stats.Succeeded - Items, 0, mayRepeat);
    }

    /// <summary>The batch's view from any member that answers, or <c>null</c> when none does right now.</summary>
    private static async Task<JsonElement?> ViewAsync(SiloCluster silos, string batch)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(Ct);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        try
        {
            return await LiveMember(silos).Client.GetFromJsonAsync<JsonElement>($"/v1/batches/{batch}", timeout.Token);
        }
        catch (Exception failure) when (failure is HttpRequestException or OperationCanceledException && !Ct.IsCancellationRequested)
        {
            return null;
        }
    }

    private static SiloCluster.Member LiveMember(SiloCluster silos) =>
        silos.Members.Last(member => !member.Killed && !member.Process.HasExited);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
