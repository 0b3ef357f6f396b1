using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Cluster;

/// <summary>
/// Two real <c>serve</c> processes on one private PostgreSQL server; one of them is frozen with SIGSTOP
/// (a long GC pause, a frozen VM) while its calls run. Its calls keep running at the provider, so the
/// cap must hold as the mock model process counts it, which enforces no cap of its own.
/// </summary>
public sealed class PausedSiloTests
{
    private const int MaxRunning = 8;

    /// <summary>The first batch's items (custom ids with this prefix) take the mock's <c>--slow</c> latency.</summary>
    private const string Slow = "slow";

    // A silo that stops answering is declared dead within seconds, so the frozen silo's grains move to
    // the live one (as a pause of minutes would do with the default probes) and run there.
    private static readonly Dictionary<string, string> QuickMembership = new()
    {
        ["Orleans__Membership__ProbeTimeout"] = "00:00:01",
        ["Orleans__Membership__NumMissedProbesLimit"] = "2",
    };

    [Fact]
    public async Task APausedSilosCalls_StayCounted_SoTheProviderNeverSeesMoreThanMaxRunning()
    {
        // Leases of 2 s and calls of 15 s: the pause outlasts the frozen silo's leases and its membership
        // (its batch moves to the live silo and wants its items run again) but not its calls, nor their
        // attempt timeout of 20 s. Two batches share the pool: one beside the pool, one on the silo frozen.
        await using var serve = await ServeCluster.StartAsync(["--latency-ms", "15000"], 2, QuickMembership);
        const int items = 8;
        var (_, batches) = await PlaceAsync(serve, leaseSeconds: 2, items, items);
        var (live, paused) = (serve.Silos.Members[0], serve.Silos.Members[1]);
        await Eventually.MatchesAsync(serve.StatsAsync,
            stats => stats.Current == MaxRunning && TcpConnections.LocalPortsTo(paused.Process.Id, serve.Mock.BaseAddress.Port).Count > 0,
            stats => $"{stats.Current} calls in flight, {TcpConnections.LocalPortsTo(paused.Process.Id, serve.Mock.BaseAddress.Port).Count} of them from the silo to pause");

        paused.Pause();
        await Task.Delay(TimeSpan.FromSeconds(12), Ct);
        paused.Continue();

        await AllCompletedAsync(live, batches, [items, items], paused);
        var final = await serve.StatsAsync();
        Assert.InRange(final.Peak, 1, MaxRunning);

        // The paused silo's calls may have been made twice.
        Assert.Equal(2 * items, final.Calls.Count);
    }

    [Fact(Skip = "Quarantined 2026-12-02: fails about half the runs on this machine, also on the code of the stop before (0102e95). "
        + "When the other batch's grain sits on the frozen silo, its items' slot releases go to the frozen activation and are lost, and the "
        + "new pool counts those slots to their deadline, so the late batch waits ~35 s instead of seconds. Fix the lost releases, then lift this.")]
    public async Task APausedPoolSilo_NeitherStopsTheOtherSilosCalls_NorBreaksTheCap_AndThePoolMovesOnOnceItIsDeclaredDead()
    {
        // The pool and a batch of 20 s calls on the silo to freeze; a batch of 1–2 s calls on the other, long
        // enough to run through the pause (a batch that ends during it sends its slots' releases to the frozen
        // pool, where they are lost: those slots then stay counted to their deadline, and nothing is free for
        // the batch submitted after the move).
        // The frozen batch's calls run at the provider for most of the pause; a pool that forgot them
        // would hand their slots to the other batch, whose items are ready.
        await using var serve = await ServeCluster.StartAsync(["--latency-ms", "1000", "2000", "--slow", Slow, "20000"], 2, QuickMembership);
        var (pool, batches) = await PlaceAsync(serve, leaseSeconds: 6, slowItems: 4, quickItems: 160);
        var (paused, live) = (serve.Silos.Members[0], serve.Silos.Members[1]);
        // All four slow calls have started (they run 20 s) and the quick batch holds the rest of the pool.
        await Eventually.MatchesAsync(serve.StatsAsync,
            stats => stats.Current == MaxRunning && stats.Calls.Keys.Count(id => id.StartsWith(Slow, StringComparison.Ordinal)) == 4,
            stats => $"{stats.Current} calls in flight, {stats.Calls.Keys.Count(id => id.StartsWith(Slow, StringComparison.Ordinal))} of the slow batch's started");

        paused.Pause();
        var pausedAt = DateTimeOffset.UtcNow;
        var moved = await PoolAnswersFromAsync(live, pool);
        var movedAfter = DateTimeOffset.UtcNow - pausedAt;

        // Once the pool has moved it grants again: a batch submitted now gets the slots the quick batch gives up.
        var late = await SubmitAsync(live, pool, $"{pool}c", 4);
        await Eventually.MatchesAsync(serve.StatsAsync, stats => stats.Calls.Keys.Any(id => id.StartsWith($"{pool}c-", StringComparison.Ordinal)),
            stats => $"no call of the batch submitted after the pool moved ({moved}), {stats.Current} in flight", TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(100));
        var lateStartedAfter = DateTimeOffset.UtcNow - pausedAt;
        await Task.Delay(TimeSpan.FromSeconds(25) - lateStartedAfter, Ct);
        var arrivals = await serve.ArrivalsAsync();
        paused.Continue();

        await AllCompletedAsync(live, [.. batches, late], [4, 160, 4], paused);
        var final = await serve.StatsAsync();
        Assert.InRange(final.Peak, 1, MaxRunning);
        Assert.Equal(4 + 160 + 4, final.Calls.Count);

        // A pause stalls the rest of the cluster no longer than membership takes to declare the silo dead
        // (ProbeTimeout × NumMissedProbesLimit and a few table reads; README: "A paused or cut-off silo"):
        // the pool moves, and so does the part of the grain directory new item grains need. Calls on slots
        // already held go on meanwhile, and a batch submitted once the pool has moved starts at once.
        var during = arrivals.Where(at => at >= pausedAt.ToUnixTimeMilliseconds()).Prepend(pausedAt.ToUnixTimeMilliseconds()).ToArray();
        var gaps = during.Zip(during.Skip(1), (before, after) => (From: before - during[0], Length: after - before)).OrderByDescending(gap => gap.Length).ToList();
        TestContext.Current.TestOutputHelper?.WriteLine(
            $"pool answered from the live silo {movedAfter.TotalSeconds:F1} s after the pause, a new batch called {lateStartedAfter.TotalSeconds:F1} s after it; "
            + $"longest gaps between calls (ms, from ms after the pause): {string.Join(", ", gaps.Take(4).Select(gap => $"{gap.Length} from {gap.From}"))}");
        Assert.InRange(movedAfter, TimeSpan.Zero, TimeSpan.FromSeconds(15));
        Assert.InRange(TimeSpan.FromMilliseconds(gaps[0].Length), TimeSpan.Zero, TimeSpan.FromSeconds(15));
        Assert.InRange(lateStartedAfter - movedAfter, TimeSpan.Zero, TimeSpan.FromSeconds(5));
    }

    /// <summary>Polls the pool's view through <paramref name="member"/> until it is served from that silo; returns the silo.</summary>
    private static async Task<string> PoolAnswersFromAsync(SiloCluster.Member member, string pool)
    {
        using var quick = new HttpClient { BaseAddress = member.Client.BaseAddress, Timeout = TimeSpan.FromSeconds(2) };
        foreach (var (name, value) in member.Client.DefaultRequestHeaders)
        {
            quick.DefaultRequestHeaders.TryAddWithoutValidation(name, value);
        }

        return await Eventually.MatchesAsync(async () =>
            {
                try
                {
                    return (await quick.GetFromJsonAsync<JsonElement>($"/v1/pools/{pool}", Ct)).GetProperty("silo").GetString() ?? "";
                }
                catch (Exception failure) when (failure is HttpRequestException or TaskCanceledException && !Ct.IsCancellationRequested)
                {
                    return "";
                }
            },
            member.Is, silo => $"the pool is still on {silo}", TimeSpan.FromSeconds(40), TimeSpan.FromMilliseconds(200));
    }

    private static async Task AllCompletedAsync(SiloCluster.Member live, string[] batches, int[] items, SiloCluster.Member paused)
    {
        foreach (var (batch, count) in batches.Zip(items))
        {
            await Eventually.MatchesAsync(() => live.Client.GetFromJsonAsync<JsonElement>($"/v1/batches/{batch}", Ct),
                status => status.GetProperty("state").GetString() == "completed",
                status => $"batch not completed: {status}. Output:\n{live.Process.Output}\n{paused.Process.Output}",
                TimeSpan.FromSeconds(120), TimeSpan.FromMilliseconds(200));

            // Every item ended once, in success.
            var results = (await live.Client.GetStringAsync($"/v1/batches/{batch}/results", Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
            Assert.Equal(count, results.Length);
            Assert.All(results, line => Assert.Equal(200, JsonDocument.Parse(line).RootElement.GetProperty("response").GetProperty("status_code").GetInt32()));
        }
    }

    /// <summary>
    /// One pool and a batch submitted through each silo, until the pool and the first batch (its custom ids
    /// prefixed <see cref="Slow"/>) are on the first silo and the second batch on the other (Orleans places
    /// a grain where it is first called, mostly).
    /// </summary>
    private static async Task<(string Pool, string[] Batches)> PlaceAsync(ServeCluster serve, int leaseSeconds, int slowItems, int quickItems)
    {
        var (first, second) = (serve.Silos.Members[0], serve.Silos.Members[1]);
        for (var attempt = 0; ; attempt++)
        {
            var name = $"p{attempt}";
            var pool = new StringContent(serve.PoolJson(MaxRunning, leaseSeconds), Encoding.UTF8, "application/json");
            Assert.Equal(HttpStatusCode.OK, (await first.Client.PutAsync($"/v1/pools/{name}", pool, Ct)).StatusCode);
            string[] batches = [await SubmitAsync(first, name, $"{Slow}{name}a", slowItems), await SubmitAsync(second, name, $"{name}b", quickItems)];
            var poolSilo = (await first.Client.GetFromJsonAsync<JsonElement>($"/v1/pools/{name}", Ct)).GetProperty("silo").GetString();
            var silos = new List<string?>();
            foreach (var batch in batches)
            {
                silos.Add((await first.Client.GetFromJsonAsync<JsonElement>($"/v1/batches/{batch}", Ct)).GetProperty("silo").GetString());
            }

            if (first.Is(poolSilo) && first.Is(silos[0]) && second.Is(silos[1]))
            {
                return (name, batches);
            }

            Assert.True(attempt < 20, $"the pool and the batches never landed as asked: {poolSilo}, {string.Join(", ", silos)}");
            foreach (var batch in batches)
            {
                Assert.Equal(HttpStatusCode.OK, (await first.Client.PostAsync($"/v1/batches/{batch}/cancel", null, Ct)).StatusCode);
            }

            await Eventually.MatchesAsync(serve.StatsAsync, stats => stats.Current == 0, stats => $"{stats.Current} calls of cancelled batches still in flight");
            await serve.ResetStatsAsync();

            // Placement weighs the silos' load, which a moment changes.
            await Task.Delay(TimeSpan.FromMilliseconds(500), Ct);
        }
    }

    private static async Task<string> SubmitAsync(SiloCluster.Member member, string pool, string prefix, int items)
    {
        var created = await member.Client.PostAsync($"/v1/batches?pool={pool}&attemptTimeoutSeconds=25",
            new StringContent(Jsonl.Lines(items, prefix), Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        return (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
