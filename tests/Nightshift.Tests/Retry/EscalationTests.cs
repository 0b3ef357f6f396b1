using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Retry;

/// <summary>
/// Batch option <c>escalate</c>, through the real HTTP API of a real silo against the mock model as a process:
/// <c>json-model</c> answers <c>{"answer": "…"}</c>, every other model plain text, and the mock counts the calls
/// per model and per custom id itself, so which pool answered each attempt is asserted from outside.
/// </summary>
public sealed class EscalationTests(ApiHost host) : IClassFixture<ApiHost>, IAsyncLifetime
{
    /// <summary>Each test's pools are its own: a pool keeps its slots and state across tests on the shared silo.</summary>
    private readonly string _pools = Guid.NewGuid().ToString("n")[..8];

    private MockModelProcess _mock = null!;

    private HttpClient Http => host.Http;

    public async ValueTask InitializeAsync() =>
        _mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "1", "5", "--json-models", "json-model"], Ct);

    public ValueTask DisposeAsync()
    {
        _mock.Dispose();
        return ValueTask.CompletedTask;
    }

    [Fact]
    public async Task AnswersThatFailValidation_EscalateEveryItemExactlyOnce_ToTheNextPool()
    {
        await CreatePoolAsync("small", "text-model");
        await CreatePoolAsync("big", "json-model");

        var id = await SubmitAsync($"pool={Pool("small")}&escalate={Pool("big")}", JsonAnswerLines.Lines("up", 8));

        var batch = await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));
        Assert.Equal(8L, batch.GetProperty("counts").GetProperty("succeeded").GetInt64());
        Assert.All(await host.ResultsAsync(id), result => Assert.Equal(JsonValueKind.Null, result.GetProperty("error").ValueKind));

        // One call on each model per item, by the mock's own counts: the text model's answer failed, the JSON model's passed.
        var stats = await StatsAsync(_mock);
        Assert.Equal(8, stats.GetProperty("calls_by_model").GetProperty("text-model").GetInt32());
        Assert.Equal(8, stats.GetProperty("calls_by_model").GetProperty("json-model").GetInt32());
        Assert.All(Calls(stats, "up-").Values, count => Assert.Equal(2, count));

        // The item records which pool and model answered, and each attempt where it ran.
        var item = await Http.GetFromJsonAsync<JsonElement>($"/v1/batches/{id}/items/up-3", Ct);
        Assert.Equal((Pool("big"), "json-model"), (item.GetProperty("pool").GetString(), item.GetProperty("model").GetString()));
        var attempts = item.GetProperty("attempts").EnumerateArray()
            .Select(attempt => (attempt.GetProperty("pool").GetString(), attempt.GetProperty("model").GetString(), attempt.GetProperty("outcome").GetString())).ToList();
        Assert.Equal([(Pool("small"), "text-model", "validation_failed"), (Pool("big"), "json-model", "succeeded")], attempts);

        // A retry cannot move the batch onto a pool it escalates to: one pool would be two of its stages.
        var retry = await Http.PostAsJsonAsync($"/v1/batches/{id}/retry", new { pool = Pool("big") }, Ct);
        Assert.Equal(HttpStatusCode.BadRequest, retry.StatusCode);
        Assert.StartsWith($"pool: pool '{Pool("big")}' is one of the batch's escalation pools",
            (await retry.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(Pool("small"), (await Http.GetFromJsonAsync<JsonElement>($"/v1/batches/{id}", Ct)).GetProperty("pool").GetString());
    }

    [Fact]
    public async Task AListOfPools_IsClimbedOnePoolPerValidationFailure_AsJsonOptions()
    {
        await CreatePoolAsync("small", "text-model");
        await CreatePoolAsync("medium", "other-text-model");
        await CreatePoolAsync("big", "json-model");
        var items = JsonAnswerLines.Lines("climb", 3).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => JsonDocument.Parse(line).RootElement).ToArray();

        var submitted = await Http.PostAsJsonAsync("/v1/batches",
            new { pool = Pool("small"), items, options = new { escalate = new[] { Pool("medium"), Pool("big") } } }, Ct);
        Assert.Equal(HttpStatusCode.Created, submitted.StatusCode);
        var id = (await submitted.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;

        // Three answers each, one per pool: two escalations fit the default validation budget of a batch that escalates twice.
        var batch = await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));
        Assert.Equal(3L, batch.GetProperty("counts").GetProperty("succeeded").GetInt64());
        var byModel = (await StatsAsync(_mock)).GetProperty("calls_by_model");
        Assert.Equal((3, 3, 3), (byModel.GetProperty("text-model").GetInt32(), byModel.GetProperty("other-text-model").GetInt32(), byModel.GetProperty("json-model").GetInt32()));
    }

    [Fact]
    public async Task NetworkErrorsAnd429s_OnTheFirstPool_NeverEscalate()
    {
        // The first pool's provider answers valid JSON, between injected 429s and 500s; the second pool's is never called.
        using var faulty = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "1", "5", "--json-models", "json-model",
            "--fault-429", "0.2", "--fault-500", "0.2", "--retry-after-s", "0", "--seed", "20261206"], Ct);
        await CreatePoolAsync("flaky", "json-model", faulty);
        await CreatePoolAsync("big", "json-model");

        var id = await SubmitAsync($"pool={Pool("flaky")}&escalate={Pool("big")}&maxAttempts=20&baseDelaySeconds=0.01&maxDelaySeconds=0.05",
            JsonAnswerLines.Lines("steady", 20));

        var batch = await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));
        Assert.Equal(20L, batch.GetProperty("counts").GetProperty("succeeded").GetInt64());
        var injected = (await StatsAsync(faulty)).GetProperty("injected");
        Assert.True(injected.GetProperty("429").GetInt64() > 0 && injected.GetProperty("500").GetInt64() > 0, $"the faults were injected: {injected}");
        Assert.Equal(0, (await StatsAsync(_mock)).GetProperty("total").GetInt64());
    }

    [Theory]
    [InlineData("escalate=no-such-pool", "escalate: pool 'no-such-pool' does not exist")]
    [InlineData("escalate={own}", "escalate: pool '{own}' is the batch's own pool")]
    [InlineData("escalate=", "escalate: 1 to 8 distinct pool names")]
    [InlineData("escalate=a,a", "escalate: 1 to 8 distinct pool names")]
    [InlineData("escalate=a,,b", "escalate: 1 to 8 distinct pool names")]
    public async Task ABadEscalation_Is400_NamingTheOption_AndNothingIsWritten(string query, string detail)
    {
        await CreatePoolAsync("small", "text-model");
        var before = await Http.GetFromJsonAsync<JsonElement>("/v1/batches?limit=1000", Ct);

        var response = await Http.PostAsync($"/v1/batches?pool={Pool("small")}&{query.Replace("{own}", Pool("small"), StringComparison.Ordinal)}",
            new StringContent(JsonAnswerLines.Lines("bad", 2), Encoding.UTF8, "application/x-ndjson"), Ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(detail.Replace("{own}", Pool("small"), StringComparison.Ordinal),
            (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("detail").GetString(), StringComparison.Ordinal);
        var after = await Http.GetFromJsonAsync<JsonElement>("/v1/batches?limit=1000", Ct);
        Assert.Equal(before.GetProperty("items").GetArrayLength(), after.GetProperty("items").GetArrayLength());
    }

    private string Pool(string name) => $"{name}-{_pools}";

    private async Task CreatePoolAsync(string name, string model, MockModelProcess? mock = null) =>
        (await Http.PutAsJsonAsync($"/v1/pools/{Pool(name)}",
            new { provider = "openai", endpoint = new Uri((mock ?? _mock).BaseAddress, "v1").ToString(), model, maxRunning = 4 }, Ct)).EnsureSuccessStatusCode();

    private async Task<string> SubmitAsync(string query, string lines)
    {
        var submitted = await Http.PostAsync($"/v1/batches?{query}", new StringContent(lines, Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, submitted.StatusCode);
        return (await submitted.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
    }

    private static async Task<JsonElement> StatsAsync(MockModelProcess mock)
    {
        using var client = new HttpClient { BaseAddress = mock.BaseAddress };
        return await client.GetFromJsonAsync<JsonElement>("stats", Ct);
    }

    /// <summary>The mock's own count of calls per custom id, for the ids starting with <paramref name="prefix"/>.</summary>
    private static Dictionary<string, int> Calls(JsonElement stats, string prefix) =>
        stats.GetProperty("calls").EnumerateObject().Where(call => call.Name.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(call => call.Name, call => call.Value.GetInt32());

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
