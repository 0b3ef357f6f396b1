using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Retry;

/// <summary>
/// Each item's attempt history, through the real HTTP API of a real silo, against the mock model as a process that
/// answers a seeded share of calls with 500 or leaves them hanging past the attempt's timeout, and counts every call
/// per item itself: the history must list exactly the calls the mock saw.
/// </summary>
public sealed class AttemptHistoryTests(ApiHost host) : IClassFixture<ApiHost>, IAsyncLifetime
{
    private const string Pool = "history";
    private const int Items = 12;

    private MockModelProcess _mock = null!;

    public async ValueTask InitializeAsync() => _mock = await MockModelProcess.StartAsync(
        ["--port", "0", "--latency-ms", "1", "5", "--fault-500", "0.3", "--fault-hang", "0.15", "--hang-ms", "3000", "--seed", "7"], Ct);

    public ValueTask DisposeAsync()
    {
        _mock.Dispose();
        return ValueTask.CompletedTask;
    }

    [Fact]
    public async Task EveryCall_IsInItsItemsHistory_AsTheMockCountedIt_AndCallsCutOffByTheTimeoutAreMaybeBilled()
    {
        (await host.Http.PutAsJsonAsync($"/v1/pools/{Pool}", new { provider = "openai", endpoint = new Uri(_mock.BaseAddress, "v1").ToString(), model = "hist-model", maxRunning = 4 }, Ct))
            .EnsureSuccessStatusCode();
        var submitted = await host.Http.PostAsync($"/v1/batches?pool={Pool}&maxAttempts=20&baseDelaySeconds=0&maxDelaySeconds=0&attemptTimeoutSeconds=0.5",
            new StringContent(Jsonl.Lines(Items, "hist"), Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, submitted.StatusCode);
        var id = (await submitted.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        var batch = await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(2));
        Assert.Equal(Items, batch.GetProperty("counts").GetProperty("succeeded").GetInt32());

        var calls = await CallsAsync();
        var maybeBilled = 0;
        for (var i = 0; i < Items; i++)
        {
            var item = await host.Http.GetFromJsonAsync<JsonElement>($"/v1/batches/{id}/items/hist-{i}", Ct);
            var attempts = item.GetProperty("attempts").EnumerateArray().ToList();
            Assert.Equal(calls[$"hist-{i}"], attempts.Count);
            Assert.Equal(("succeeded", i), (item.GetProperty("state").GetString(), item.GetProperty("index").GetInt32()));
            Assert.All(attempts, attempt => Assert.Equal((Pool, "hist-model"), (attempt.GetProperty("pool").GetString(), attempt.GetProperty("model").GetString())));

            // Oldest first: the retried calls, each a 500 or a timeout, then the answer kept.
            var last = attempts[^1];
            Assert.Equal(("succeeded", 200, false), (last.GetProperty("outcome").GetString(), last.GetProperty("statusCode").GetInt32(), last.GetProperty("maybeBilled").GetBoolean()));
            Assert.True(last.GetProperty("inputTokens").GetInt64() > 0);
            foreach (var retried in attempts[..^1])
            {
                Assert.Equal("retried", retried.GetProperty("outcome").GetString());
                var timedOut = retried.GetProperty("statusCode").ValueKind == JsonValueKind.Null;
                Assert.Equal(timedOut, retried.GetProperty("maybeBilled").GetBoolean());
                if (timedOut)
                {
                    maybeBilled++;
                    Assert.True(retried.GetProperty("durationSeconds").GetDouble() >= 0.4, retried.ToString());
                    Assert.True(retried.GetProperty("estimatedTokens").GetInt64() > 0, retried.ToString());
                }
                else
                {
                    Assert.Equal(500, retried.GetProperty("statusCode").GetInt32());
                }
            }

            Assert.True(attempts.Zip(attempts.Skip(1)).All(pair => pair.First.GetProperty("startedAt").GetDateTimeOffset() <= pair.Second.GetProperty("startedAt").GetDateTimeOffset()));
        }

        // The seed's faults reached some items, some of them hangs; the batch counts those as maybe billed.
        Assert.True(calls.Values.Sum() > Items, "no call was retried");
        Assert.True(maybeBilled > 0, "no call timed out");
        var view = await host.Http.GetFromJsonAsync<JsonElement>($"/v1/batches/{id}", Ct);
        Assert.Equal(maybeBilled, view.GetProperty("maybeBilled").GetProperty("calls").GetInt32());
        Assert.True(view.GetProperty("maybeBilled").GetProperty("estimatedTokens").GetInt64() > 0);

        Assert.Equal(HttpStatusCode.NotFound, (await host.Http.GetAsync($"/v1/batches/{id}/items/no-such-item", Ct)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await host.Http.GetAsync("/v1/batches/no-such-batch/items/hist-0", Ct)).StatusCode);
    }

    /// <summary>The mock's own count of calls per custom id.</summary>
    private async Task<Dictionary<string, int>> CallsAsync()
    {
        using var client = new HttpClient { BaseAddress = _mock.BaseAddress };
        var stats = await client.GetFromJsonAsync<JsonElement>("stats", Ct);
        return stats.GetProperty("calls").EnumerateObject().ToDictionary(call => call.Name, call => call.Value.GetInt32());
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
