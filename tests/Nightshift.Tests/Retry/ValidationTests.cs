using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Retry;

/// <summary>
/// Answers checked against the JSON a line's <c>response_format</c> or the batch's <c>schema</c> asks for,
/// through the real HTTP API of a real silo, against the mock model as a process: <c>json-model</c> answers
/// <c>{"answer": "…"}</c>, every other model plain text, and the mock counts each item's calls itself.
/// </summary>
public sealed class ValidationTests(ApiHost host) : IClassFixture<ApiHost>, IAsyncLifetime
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
    public async Task PlainTextAnswers_ToAJsonSchemaRequest_AreRetriedUnderTheirOwnBudget_ThenFailAsValidationFailed()
    {
        var id = await SubmitAsync("text-model", "maxValidationAttempts=3", JsonAnswerLines.Lines("plain", 6));

        var batch = await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));
        Assert.Equal(6L, batch.GetProperty("counts").GetProperty("failed").GetInt64());
        Assert.All(await host.ResultsAsync(id), result =>
        {
            var error = result.GetProperty("error");
            Assert.Equal("validation_failed", error.GetProperty("code").GetString());
            Assert.Contains("choices[0].message.content is not JSON", error.GetProperty("message").GetString(), StringComparison.Ordinal);
            Assert.Equal(200, result.GetProperty("response").GetProperty("status_code").GetInt32());
        });

        // Three answers each, then no more: the validation budget, not the attempts for model errors (5).
        var calls = await CallsAsync("plain-");
        Assert.Equal(6, calls.Count);
        Assert.All(calls.Values, count => Assert.Equal(3, count));
    }

    [Fact]
    public async Task Temperatures_GoUpWithEachValidationFailure_AndTheLastStays()
    {
        var id = await SubmitAsync("text-model", "maxValidationAttempts=3&temperatures=0,0.7", JsonAnswerLines.Lines("warm", 3));
        await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));

        using var client = new HttpClient { BaseAddress = _mock.BaseAddress };
        var asked = await client.GetFromJsonAsync<Dictionary<string, double?[]>>("stats/temperatures", Ct);
        Assert.All(Enumerable.Range(0, 3), i => Assert.Equal([0, 0.7, 0.7], asked![$"warm-{i}"]));
    }

    [Fact]
    public async Task JsonAnswers_ThatSatisfyTheSchema_SucceedWithOneCallEach()
    {
        var id = await SubmitAsync("json-model", "", JsonAnswerLines.Lines("json", 6));

        var batch = await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));
        Assert.Equal(6L, batch.GetProperty("counts").GetProperty("succeeded").GetInt64());
        Assert.All(await host.ResultsAsync(id), result => Assert.Equal(JsonValueKind.Null, result.GetProperty("error").ValueKind));
        Assert.All((await CallsAsync("json-")).Values, count => Assert.Equal(1, count));
    }

    [Fact]
    public async Task TheBatchSchema_AppliesToEveryLine_AndNamesThePathThatFailed()
    {
        // The JSON model answers {"answer": "<text>"}; this schema wants a number there. Two answers each by default.
        var schema = Uri.EscapeDataString("""{"type": "object", "properties": {"answer": {"type": "integer"}}}""");
        var id = await SubmitAsync("json-model", $"schema={schema}", Jsonl.Lines(4, "typed"));

        var batch = await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));
        Assert.Equal(4L, batch.GetProperty("counts").GetProperty("failed").GetInt64());
        Assert.All(await host.ResultsAsync(id), result =>
        {
            Assert.Equal("validation_failed", result.GetProperty("error").GetProperty("code").GetString());
            Assert.Contains("/answer:", result.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        });
        Assert.All((await CallsAsync("typed-")).Values, count => Assert.Equal(2, count));
    }

    [Fact]
    public async Task FailedItems_RetriedOnAnotherPool_AllSucceed_WithOneResultLineEach()
    {
        var id = await SubmitAsync("text-model", "", JsonAnswerLines.Lines("moved", 5));
        await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));
        await CreatePoolAsync("json-model");

        var retried = await Http.PostAsJsonAsync($"/v1/batches/{id}/retry", new { status = "failed", errorCode = "validation_failed", pool = Pool("json-model") }, Ct);
        Assert.Equal(HttpStatusCode.OK, retried.StatusCode);
        var answer = await retried.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal(5, answer.GetProperty("requeued").GetInt32());

        var batch = await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));
        Assert.Equal((Pool("json-model"), 5L, 0L), (batch.GetProperty("pool").GetString(), batch.GetProperty("counts").GetProperty("succeeded").GetInt64(),
            batch.GetProperty("counts").GetProperty("failed").GetInt64()));
        var results = await host.ResultsAsync(id);
        Assert.Equal(5, results.Select(result => result.GetProperty("custom_id").GetString()).Distinct().Count());
        Assert.Equal(5, results.Count);
        Assert.All(results, result => Assert.Equal(JsonValueKind.Null, result.GetProperty("error").ValueKind));

        // Two answers each from the text model (the validation budget), then one from the JSON model.
        Assert.All((await CallsAsync("moved-")).Values, count => Assert.Equal(3, count));

        // Nothing is left to retry: the batch stays as it is.
        var again = await Http.PostAsJsonAsync($"/v1/batches/{id}/retry", new { errorCode = "validation_failed" }, Ct);
        var unchanged = await again.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal(0, unchanged.GetProperty("requeued").GetInt32());
        Assert.Equal(("completed", batch.GetProperty("finishedAt").GetString()),
            (unchanged.GetProperty("batch").GetProperty("state").GetString(), unchanged.GetProperty("batch").GetProperty("finishedAt").GetString()));
    }

    [Fact]
    public async Task ARunningBatch_IsNotRetried_409()
    {
        // A paused pool grants nothing, so the batch stays running.
        await CreatePoolAsync("held-model");
        Assert.Equal(HttpStatusCode.OK, (await Http.PostAsync($"/v1/pools/{Pool("held-model")}/pause", null, Ct)).StatusCode);
        var id = await SubmitAsync("held-model", "", JsonAnswerLines.Lines("held", 2));

        var response = await Http.PostAsync($"/v1/batches/{id}/retry", null, Ct);

        Assert.Equal(HttpStatusCode.Conflict, response.StatusCode);
        Assert.Contains("retry it once it has finished", (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await Http.PostAsync($"/v1/batches/{id}/cancel", null, Ct)).StatusCode);
    }

    [Theory]
    [InlineData("""{"pool": "no-such-pool"}""", HttpStatusCode.BadRequest, "pool: pool 'no-such-pool' does not exist")]
    [InlineData("""{"status": "succeeded"}""", HttpStatusCode.BadRequest, "status: 'failed' or 'cancelled'")]
    [InlineData("""{"errorCode": "timeout"}""", HttpStatusCode.BadRequest, "errorCode: 'validation_failed', 'failed' or 'cancelled'")]
    [InlineData("""{"statuss": "failed"}""", HttpStatusCode.BadRequest, "unknown field(s) 'statuss'")]
    [InlineData("""[1]""", HttpStatusCode.BadRequest, "the body must be a JSON object")]
    public async Task ABadRetry_IsRefused_NamingWhy(string body, HttpStatusCode status, string detail)
    {
        var id = await SubmitAsync("text-model", "maxValidationAttempts=1", JsonAnswerLines.Lines($"refused{(int)status}{detail.Length}", 1));
        await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));

        var response = await Http.PostAsync($"/v1/batches/{id}/retry", new StringContent(body, Encoding.UTF8, "application/json"), Ct);

        Assert.Equal(status, response.StatusCode);
        Assert.Contains(detail, (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await Http.PostAsync("/v1/batches/no-such-batch/retry", null, Ct)).StatusCode);
    }

    [Theory]
    [InlineData("schema=%7B%22type%22%3A12%7D", "schema: not a JSON Schema")]
    [InlineData("schema=%5B1%5D", "schema: a JSON Schema, as a JSON object")]
    [InlineData("maxValidationAttempts=0", "maxValidationAttempts: from 1 to 20")]
    [InlineData("temperatures=0,hot", "temperatures: 1 to 20 numbers from 0 to 2")]
    [InlineData("temperatures=3", "temperatures: 1 to 20 numbers from 0 to 2")]
    public async Task ABadSchemaOption_Is400_NamingIt(string query, string detail)
    {
        await CreatePoolAsync("text-model");
        var response = await Http.PostAsync($"/v1/batches?pool={Pool("text-model")}&{query}", new StringContent(Jsonl.Lines(2, "bad"), Encoding.UTF8, "application/x-ndjson"), Ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains(detail, (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("""{"type": "json_schema", "json_schema": {"name": "a"}}""", "field 'body.response_format.json_schema.schema': missing")]
    [InlineData("""{"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": 12}}}""", "field 'body.response_format.json_schema.schema': not a JSON Schema")]
    public async Task ALineWithABadSchema_Is400_NamingTheLineAndField(string responseFormat, string detail)
    {
        await CreatePoolAsync("text-model");
        var bad = $$$"""{"custom_id": "s", "body": {"model": "m", "messages": [], "response_format": {{{responseFormat}}}}}""";
        var response = await Http.PostAsync($"/v1/batches?pool={Pool("text-model")}", new StringContent($"{Jsonl.Line("ok", "x")}\n{bad}\n", Encoding.UTF8, "application/x-ndjson"), Ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains($"line 2, {detail}", (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    private string Pool(string model) => $"{model}-{_pools}";

    private async Task CreatePoolAsync(string model) =>
        (await Http.PutAsJsonAsync($"/v1/pools/{Pool(model)}", new { provider = "openai", endpoint = new Uri(_mock.BaseAddress, "v1").ToString(), model, maxRunning = 4 }, Ct))
            .EnsureSuccessStatusCode();

    private async Task<string> SubmitAsync(string model, string query, string lines)
    {
        await CreatePoolAsync(model);
        var submitted = await Http.PostAsync($"/v1/batches?pool={Pool(model)}&{query}", new StringContent(lines, Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, submitted.StatusCode);
        return (await submitted.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
    }

    /// <summary>The mock's own count of calls per custom id, for the ids starting with <paramref name="prefix"/>.</summary>
    private async Task<Dictionary<string, int>> CallsAsync(string prefix)
    {
        using var client = new HttpClient { BaseAddress = _mock.BaseAddress };
        var stats = await client.GetFromJsonAsync<JsonElement>("stats", Ct);
        return stats.GetProperty("calls").EnumerateObject().Where(call => call.Name.StartsWith(prefix, StringComparison.Ordinal))
            .ToDictionary(call => call.Name, call => call.Value.GetInt32());
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
