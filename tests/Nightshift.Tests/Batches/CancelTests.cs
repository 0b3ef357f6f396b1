using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Batches;

/// <summary>Cancelling a batch while its calls end in retries, through the real HTTP API of a real silo and the mock model as a process.</summary>
public sealed class CancelTests(ApiHost host) : IClassFixture<ApiHost>
{
    private const int Items = 400;

    [Fact]
    public async Task ACancelWhileCallsEndInRetries_LeavesNoItemPending_EveryItemEndsWithAResult()
    {
        // Every call fails with a 500 after 20–80 ms and is retried at once, so the pool stays full and the calls
        // ending around the cancel put their items back to pending for a retry, some of them after the cancel has
        // cancelled the items pending then.
        using var mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "20", "80", "--fault-500", "1", "--seed", "20261206"], Ct);
        var pool = await host.Http.PutAsJsonAsync("/v1/pools/cancelled",
            new { provider = "openai", endpoint = new Uri(mock.BaseAddress, "v1").ToString(), model = "m", maxRunning = 50 }, Ct);
        Assert.Equal(HttpStatusCode.OK, pool.StatusCode);
        var submitted = await host.Http.PostAsync("/v1/batches?pool=cancelled&maxAttempts=100&baseDelaySeconds=0&maxDelaySeconds=0",
            new StringContent(Jsonl.Lines(Items, "cancel"), Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, submitted.StatusCode);
        var id = (await submitted.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        await Eventually.MatchesAsync(() => mock.StatsAsync(Ct), stats => stats.Total >= 2 * Items && stats.Current >= 40,
            stats => $"{stats.Total} calls, {stats.Current} in flight");

        Assert.Equal(HttpStatusCode.OK, (await host.Http.PostAsync($"/v1/batches/{id}/cancel", null, Ct)).StatusCode);

        var counts = (await host.WaitUntilFinishedAsync(id, TimeSpan.FromSeconds(30))).GetProperty("counts");
        Assert.Equal(0L, counts.GetProperty("pending").GetInt64());
        Assert.Equal(Items, counts.GetProperty("cancelled").GetInt64() + counts.GetProperty("failed").GetInt64());
        var results = await host.ResultsAsync(id);
        Assert.Equal(Items, results.Count);
        Assert.All(results, result => Assert.NotEqual(JsonValueKind.Null, result.GetProperty("error").ValueKind));
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
