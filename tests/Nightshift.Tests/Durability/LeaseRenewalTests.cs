using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Durability;

/// <summary>
/// The claims of calls that outlast their lease are renewed while the calls run, through the real HTTP API
/// of a real silo, against the mock model as a process that counts every call itself.
/// </summary>
public sealed class LeaseRenewalTests(ApiHost host) : IClassFixture<ApiHost>
{
    [Fact]
    public async Task TwoBatchesOnOneSilo_WhoseClaimTokensCoincide_EachCallTheModelOnce_ThoughTheCallsOutlastTheirLeases()
    {
        // Calls of 8 s on leases of 1 s: a claim left unrenewed lapses early in its call, the batch's maintenance
        // (every 5 s) finds it lapsed, and its item is requeued and called again. Both batches' first claims
        // carry the same tokens (each batch numbers its own), and the silo renews both sets side by side.
        using var mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "8000"], Ct);
        var pool = await host.Http.PutAsJsonAsync("/v1/pools/renewed",
            new { provider = "openai", endpoint = new Uri(mock.BaseAddress, "v1").ToString(), model = "m", maxRunning = 8, leaseSeconds = 1 }, Ct);
        Assert.Equal(HttpStatusCode.OK, pool.StatusCode);

        var batches = new[] { await SubmitAsync("first"), await SubmitAsync("second") };
        foreach (var id in batches)
        {
            var finished = await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));
            Assert.Equal(4L, finished.GetProperty("counts").GetProperty("succeeded").GetInt64());
        }

        var stats = await mock.StatsAsync(Ct);
        Assert.Equal(8, stats.Calls.Count);
        Assert.All(stats.Calls, call => Assert.Equal(1, call.Value));
    }

    private async Task<string> SubmitAsync(string prefix)
    {
        var submitted = await host.Http.PostAsync("/v1/batches?pool=renewed", new StringContent(Jsonl.Lines(4, prefix), Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, submitted.StatusCode);
        return (await submitted.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
