using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Pools;

/// <summary>
/// A batch's own <c>maxRunning</c>, through the real HTTP API of a real silo, against the mock model as a
/// process that counts each batch's calls in flight itself (by the custom ids' prefix).
/// </summary>
public sealed class BatchCapTests(ApiHost host) : IClassFixture<ApiHost>
{
    [Fact]
    public async Task ABatchWithItsOwnCap_NeverRunsMoreCalls_WhileTheOtherBatchUsesTheRestOfThePool()
    {
        using var mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "40", "80"], Ct);
        var pool = await host.Http.PutAsJsonAsync("/v1/pools/capped",
            new { provider = "openai", endpoint = new Uri(mock.BaseAddress, "v1").ToString(), model = "m", maxRunning = 8 }, Ct);
        Assert.Equal(HttpStatusCode.OK, pool.StatusCode);

        var capped = await SubmitAsync("maxRunning=2", "capped-batch");
        var free = await SubmitAsync("", "free-batch");
        foreach (var id in new[] { capped, free })
        {
            Assert.Equal(60L, (await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1))).GetProperty("counts").GetProperty("succeeded").GetInt64());
        }

        var stats = await mock.StatsAsync(Ct);
        Assert.Equal(2, stats.PeakByGroup["capped-batch"]);
        Assert.InRange(stats.PeakByGroup["free-batch"], 3, 8);
        Assert.InRange(stats.Peak, 1, 8);

        var refused = await host.Http.PostAsync("/v1/batches?pool=capped&maxRunning=0", new StringContent(Jsonl.Lines(1, "x"), Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains("maxRunning: from 1 to 100000", (await refused.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    private async Task<string> SubmitAsync(string query, string prefix)
    {
        var submitted = await host.Http.PostAsync($"/v1/batches?pool=capped&{query}", new StringContent(Jsonl.Lines(60, prefix), Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, submitted.StatusCode);
        return (await submitted.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
