using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Api;

public sealed class SmallLimitsApiHost : ApiHost
{
    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Nightshift:Api:MaxUploadBytes"] = $"{3 * 1024 * 1024}",
        ["Nightshift:Pools:declared:MaxRunning"] = "3",
        ["Nightshift:Pools:declared:Rpm"] = "600",
    };
}

/// <summary>Every endpoint through the real HTTP pipeline (Kestrel on 127.0.0.1) of a real silo on a real SQLite file.</summary>
public sealed class ApiTests(SmallLimitsApiHost host) : IClassFixture<SmallLimitsApiHost>
{
    private HttpClient Http => host.Http;

    [Fact]
    public async Task Pools_CanBeCreatedUpdatedListedAndRead_AndDeclaredInConfiguration()
    {
        var created = await Http.PutAsJsonAsync("/v1/pools/api-pool", new { maxRunning = 7, maxQueued = 1000, rpm = 120, apiKeyEnv = "OPENAI_KEY", endpoint = "http://127.0.0.1:9/v1", model = "gpt-4o-mini" }, Ct);
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        var updated = await Http.PutAsJsonAsync("/v1/pools/api-pool", new { maxRunning = 9 }, Ct);
        var pool = await updated.Content.ReadFromJsonAsync<JsonElement>(Ct);

        Assert.Equal(9, pool.GetProperty("maxRunning").GetInt32());
        Assert.Equal(120, pool.GetProperty("rpm").GetInt32());
        Assert.Equal("openai", pool.GetProperty("provider").GetString());
        Assert.Equal("OPENAI_KEY", pool.GetProperty("apiKeyEnv").GetString());
        Assert.Equal(0, pool.GetProperty("running").GetInt32());
        var read = await Http.GetFromJsonAsync<JsonElement>("/v1/pools/api-pool", Ct);
        Assert.Equal(9, read.GetProperty("maxRunning").GetInt32());
        var names = (await Http.GetFromJsonAsync<JsonElement>("/v1/pools", Ct)).EnumerateArray().Select(p => p.GetProperty("name").GetString()).ToList();
        Assert.Contains("api-pool", names);
        var declared = await Http.GetFromJsonAsync<JsonElement>("/v1/pools/declared", Ct);
        Assert.Equal((3, 600), (declared.GetProperty("maxRunning").GetInt32(), declared.GetProperty("rpm").GetInt32()));
    }

    [Fact]
    public async Task Pool_ShowsItsRateControl_WithTheBudgetsSourceAndBucket()
    {
        var created = await Http.PutAsJsonAsync("/v1/pools/paced", new { maxRunning = 8, rpm = 600, capDecrease = 0.5, burstSeconds = 2 }, Ct);
        var pool = await created.Content.ReadFromJsonAsync<JsonElement>(Ct);

        Assert.Equal((0.5, 2.0), (pool.GetProperty("capDecrease").GetDouble(), pool.GetProperty("burstSeconds").GetDouble()));
        var rate = pool.GetProperty("rateControl");
        Assert.Equal(8, rate.GetProperty("adaptiveCap").GetDouble());
        Assert.Equal(JsonValueKind.Null, rate.GetProperty("heldUntil").ValueKind);
        var requests = rate.GetProperty("requests");
        Assert.Equal((600, "configured", 20.0), (requests.GetProperty("perMinute").GetInt64(), requests.GetProperty("source").GetString(), requests.GetProperty("burst").GetDouble()));
        Assert.Equal(JsonValueKind.Null, rate.GetProperty("tokens").ValueKind);
    }

    [Theory]
    [InlineData("""{"maxRunning": 0}""", "maxRunning")]
    [InlineData("""{"provider": "carrier-pigeon"}""", "provider")]
    [InlineData("""{"provider": "openai"}""", "endpoint")]
    [InlineData("""{"endpoint": "ftp://x"}""", "endpoint")]
    [InlineData("""{"leaseSeconds": 0}""", "leaseSeconds")]
    [InlineData("""{"capDecrease": 1.5}""", "capDecrease")]
    [InlineData("""{"burstSeconds": 0}""", "burstSeconds")]
    [InlineData("""{"learnedLimitShare": 0}""", "learnedLimitShare")]
    [InlineData("""{"exhaustedAfterWindows": 0}""", "exhaustedAfterWindows")]
    [InlineData("""{"maxRuning": 4}""", "unknown field(s) 'maxRuning'; a pool has provider, endpoint, model, apiKeyEnv, maxRunning")]
    public async Task Pools_BadConfiguration_Is400_NamingTheField(string body, string field)
    {
        var response = await Http.PutAsync("/v1/pools/bad-pool", new StringContent(body, Encoding.UTF8, "application/json"), Ct);

        await AssertProblemAsync(response, HttpStatusCode.BadRequest, field);
        Assert.Equal(HttpStatusCode.NotFound, (await Http.GetAsync("/v1/pools/bad-pool", Ct)).StatusCode);
    }

    [Fact]
    public async Task UnknownPoolAndBatch_Are404Problems()
    {
        await AssertProblemAsync(await Http.GetAsync("/v1/pools/nope", Ct), HttpStatusCode.NotFound, "pool 'nope' does not exist");
        await AssertProblemAsync(await Http.GetAsync("/v1/batches/nope", Ct), HttpStatusCode.NotFound, "batch 'nope' does not exist");
        await AssertProblemAsync(await Http.GetAsync("/v1/batches/nope/results", Ct), HttpStatusCode.NotFound, "does not exist");
        await AssertProblemAsync(await Http.PostAsync("/v1/batches/nope/cancel", null, Ct), HttpStatusCode.NotFound, "does not exist");
    }

    [Fact]
    public async Task JsonlUpload_Is201WithLocation_RunsToCompletion_AndResultsStreamInInputOrder()
    {
        await CreatePoolAsync("upload", maxRunning: 8);
        var input = Jsonl.Lines(300, "up");

        var response = await Http.PostAsync("/v1/batches?pool=upload&maxAttempts=3&priority=2", Ndjson(input), Ct);

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var id = (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        Assert.Equal($"/v1/batches/{id}", response.Headers.Location?.OriginalString);
        var batch = await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));
        Assert.Equal(("completed", 300L), (batch.GetProperty("state").GetString(), batch.GetProperty("counts").GetProperty("succeeded").GetInt64()));
        Assert.True(batch.GetProperty("itemsPerSecond").GetDouble() > 0);

        var results = await Http.GetAsync($"/v1/batches/{id}/results", Ct);
        Assert.Equal("application/x-ndjson", results.Content.Headers.ContentType?.MediaType);
        var lines = (await results.Content.ReadAsStringAsync(Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(Enumerable.Range(0, 300).Select(i => $"up-{i}"), lines.Select(l => JsonDocument.Parse(l).RootElement.GetProperty("custom_id").GetString()));
        Assert.Empty((await Http.GetStringAsync($"/v1/batches/{id}/results?status=failed", Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(300, (await Http.GetStringAsync($"/v1/batches/{id}/results?status=succeeded", Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);

        var listed = await Http.GetFromJsonAsync<JsonElement>("/v1/batches?state=completed&limit=1000", Ct);
        Assert.Contains(listed.GetProperty("items").EnumerateArray(), b => b.GetProperty("id").GetString() == id);
    }

    [Fact]
    public async Task JsonSubmission_AndMultipartUpload_AreAccepted()
    {
        await CreatePoolAsync("forms", maxRunning: 8);
        var json = await Http.PostAsJsonAsync("/v1/batches", new
        {
            pool = "forms",
            items = new[] { new { custom_id = "j-1", body = new { messages = Array.Empty<object>() } }, new { custom_id = "j-2", body = new { messages = Array.Empty<object>() } } },
            options = new { maxAttempts = 2, priority = 3 },
        }, Ct);
        Assert.Equal(HttpStatusCode.Created, json.StatusCode);

        // Items indented over several lines, as most tools pretty-print JSON, each stay one item.
        var indented = await Http.PostAsync("/v1/batches", new StringContent("""
            {
              "pool": "forms",
              "items": [
                {
                  "custom_id": "pretty-1",
                  "body": { "messages": [ { "role": "user", "content": "Résumé <1>" } ] }
                },
                { "custom_id": "pretty-2", "body": { "messages": [] } }
              ]
            }
            """, Encoding.UTF8, "application/json"), Ct);
        Assert.Equal(HttpStatusCode.Created, indented.StatusCode);
        var prettyId = (await indented.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        Assert.Equal(2, (await host.WaitUntilFinishedAsync(prettyId, TimeSpan.FromMinutes(1))).GetProperty("counts").GetProperty("succeeded").GetInt64());

        using var form = new MultipartFormDataContent();
        var file = new ByteArrayContent(Encoding.UTF8.GetBytes(Jsonl.Lines(20, "mp")));
        file.Headers.ContentType = new MediaTypeHeaderValue("application/x-ndjson");
        form.Add(file, "file", "batch.jsonl");
        var multipart = await Http.PostAsync("/v1/batches?pool=forms", form, Ct);
        Assert.Equal(HttpStatusCode.Created, multipart.StatusCode);
        var id = (await multipart.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        Assert.Equal(20, (await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1))).GetProperty("counts").GetProperty("succeeded").GetInt64());
    }

    public static TheoryData<string, string, string, byte[], int, string> BadSubmissions()
    {
        var line = Jsonl.Line("ok", "x");
        return new TheoryData<string, string, string, byte[], int, string>
        {
            { "empty body", "pool=bad", "application/x-ndjson", [], 400, "the input is empty" },
            { "malformed JSON line", "pool=bad", "application/x-ndjson", Utf8($"{line}\n{{\"custom_id\": \n"), 400, "line 2" },
            { "custom_id a number", "pool=bad", "application/x-ndjson", Utf8("""{"custom_id": 5, "body": {}}""" + "\n"), 400, "field 'custom_id': must be a string" },
            { "custom_id a lone surrogate", "pool=bad", "application/x-ndjson", Utf8("""{"custom_id": "\ud800", "body": {}}""" + "\n"), 400, "line 1, field 'custom_id': not valid text" },
            { "custom_id with NUL", "pool=bad", "application/x-ndjson", Utf8("""{"custom_id": "a\u0000b", "body": {}}""" + "\n"), 400, "line 1, field 'custom_id': must not contain the NUL character" },
            { "body missing", "pool=bad", "application/x-ndjson", Utf8($"{line}\n" + """{"custom_id": "b"}""" + "\n"), 400, "line 2, field 'body': missing" },
            { "a stream line", "pool=bad", "application/x-ndjson", Utf8($"{line}\n" + """{"custom_id": "s", "body": {"stream": true}}""" + "\n"), 400, "line 2, field 'body.stream': streaming is not supported" },
            { "duplicate custom_id", "pool=bad", "application/x-ndjson", Utf8($"{line}\n{line}\n"), 400, "duplicate custom_id 'ok'" },
            { "a 2 MB line", "pool=bad", "application/x-ndjson", Utf8($"{line}\n{Jsonl.Line("huge", new string('x', 2 * 1024 * 1024))}\n"), 400, "line 2: the line is longer than the limit" },
            { "invalid UTF-8", "pool=bad", "application/x-ndjson", [.. Utf8("{\"custom_id\": \"u\", \"body\": {\"t\": \""), 0xC3, 0x28, .. Utf8("\"}}\n")], 400, "not valid UTF-8" },
            { "unknown pool", "pool=no-such-pool", "application/x-ndjson", Utf8($"{line}\n"), 400, "pool 'no-such-pool' does not exist" },
            { "no pool", "", "application/x-ndjson", Utf8($"{line}\n"), 400, "pool" },
            { "bad option", "pool=bad&priority=11", "application/x-ndjson", Utf8($"{line}\n"), 400, "priority: from 1 to 10" },
            { "wrong content type", "pool=bad", "text/csv", Utf8("a,b\n"), 415, "'text/csv' is not accepted" },
            { "oversized body", "pool=bad", "application/x-ndjson", Utf8(Jsonl.Lines(30_000, "big")), 413, "the limit is 3145728" },
            { "malformed JSON submission", "", "application/json", Utf8("{\"pool\": \"bad\", \"items\": [}"), 400, "malformed JSON" },
            { "JSON items not an array", "", "application/json", Utf8("""{"pool": "bad", "items": {}}"""), 400, "items: required, an array" },
            { "JSON item without body", "", "application/json", Utf8("""{"pool": "bad", "items": [{"custom_id": "a", "body": {}}, {"custom_id": "b"}]}"""), 400, "items[1], field 'body': missing" },
            { "JSON wrong option type", "", "application/json", Utf8("""{"pool": "bad", "items": [], "options": {"maxAttempts": "many"}}"""), 400, "options.maxAttempts" },
            { "typo in a query option", "pool=bad&maxAttemps=3", "application/x-ndjson", Utf8(Jsonl.Lines(2, "t")), 400, "query: unknown option 'maxAttemps'; known: pool, maxAttempts" },
            { "unknown query options", "pool=bad&escalation=gpt-5&priority=2&x=1", "application/x-ndjson", Utf8(Jsonl.Lines(2, "t")), 400, "query: unknown options 'escalation', 'x'" },
            { "JSON unknown field", "", "application/json", Utf8("""{"pool": "bad", "items": [], "escalate": "gpt-5"}"""), 400, "unknown field(s) 'escalate'" },
            { "JSON typo in an option", "", "application/json", Utf8("""{"pool": "bad", "items": [], "options": {"maxAttemps": 3}}"""), 400, "options: unknown option 'maxAttemps'" },
            { "queue full", "pool=tiny-queue", "application/x-ndjson", Utf8(Jsonl.Lines(6, "q")), 429, "maxQueued of 5" },
        };
    }

    [Theory]
    [MemberData(nameof(BadSubmissions), DisableDiscoveryEnumeration = true)]
    public async Task BadSubmission_IsRefusedWithItsStatusAndMessage_AndNothingIsWritten(string name, string query, string contentType, byte[] body, int status, string message)
    {
        await CreatePoolAsync("bad", maxRunning: 2);
        await Http.PutAsJsonAsync("/v1/pools/tiny-queue", new { maxRunning = 1, maxQueued = 5 }, Ct);
        var before = await CatalogueAsync();
        var content = new ByteArrayContent(body);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(contentType);

        var response = await Http.PostAsync($"/v1/batches?{query}", content, Ct);

        await AssertProblemAsync(response, (HttpStatusCode)status, message, name);
        Assert.Equal(before, await CatalogueAsync());
    }

    [Fact]
    public async Task OversizedChunkedUpload_WithoutALength_Is413_AndNothingIsWritten()
    {
        await CreatePoolAsync("bad", maxRunning: 2);
        var before = await CatalogueAsync();
        var content = new StreamContent(new MemoryStream(Utf8(Jsonl.Lines(30_000, "chunked"))));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/x-ndjson");
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/batches?pool=bad") { Content = content };
        request.Headers.TransferEncodingChunked = true;

        var response = await Http.SendAsync(request, Ct);

        await AssertProblemAsync(response, HttpStatusCode.RequestEntityTooLarge, "passed the limit of 3145728 bytes");
        Assert.Equal(before, await CatalogueAsync());
    }

    [Fact]
    public async Task Idempotency_TheSameKeyWithAnotherPayload_Is422_NamingTheKeyAndItsBatch_AndWritesNothing()
    {
        await CreatePoolAsync("idem-other", maxRunning: 2);
        var key = $"nightly-{Guid.NewGuid():n}";
        var first = await PostWithKeyAsync("idem-other", key, Jsonl.Lines(10, "a"));
        var id = (await first.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        var before = await CatalogueAsync();

        var other = await PostWithKeyAsync("idem-other", key, Jsonl.Lines(10, "b"));
        var otherOptions = await PostWithKeyAsync("idem-other", key, Jsonl.Lines(10, "a"), "&maxAttempts=2");

        await AssertProblemAsync(other, HttpStatusCode.UnprocessableEntity, $"Idempotency-Key '{key}' was used for batch '{id}' with another payload");
        await AssertProblemAsync(otherOptions, HttpStatusCode.UnprocessableEntity, $"Idempotency-Key '{key}'");
        Assert.Equal(before, await CatalogueAsync());
        Assert.Equal(HttpStatusCode.OK, (await PostWithKeyAsync("idem-other", key, Jsonl.Lines(10, "a"))).StatusCode);
    }

    [Fact]
    public async Task Idempotency_FourConcurrentSubmissionsOfOneKey_CreateOneBatch_AndEveryAnswerNamesIt()
    {
        await CreatePoolAsync("idem-race", maxRunning: 2);
        var key = $"race-{Guid.NewGuid():n}";
        var lines = Jsonl.Lines(3_000, "race");

        var answers = await Task.WhenAll(Enumerable.Range(0, 4).Select(_ => Task.Run(() => PostWithKeyAsync("idem-race", key, lines))));

        var statuses = answers.Select(answer => answer.StatusCode).ToList();
        Assert.Equal(1, statuses.Count(status => status == HttpStatusCode.Created));
        Assert.All(statuses, status => Assert.Contains(status, new[] { HttpStatusCode.Created, HttpStatusCode.OK }));
        var ids = new List<string?>();
        foreach (var answer in answers)
        {
            ids.Add((await answer.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString());
        }

        Assert.Single(ids.Distinct());
        var listed = await Http.GetFromJsonAsync<JsonElement>("/v1/batches?limit=1000", Ct);
        Assert.Single(listed.GetProperty("items").EnumerateArray(), b => b.GetProperty("pool").GetString() == "idem-race");
        Assert.Equal(3_000, (await host.Store.CountAsync(ids[0]!, Ct)).Total);
    }

    [Fact]
    public async Task Idempotency_ARetriedSubmissionReturnsTheOriginalBatch()
    {
        await CreatePoolAsync("idem", maxRunning: 2);
        var key = Guid.NewGuid().ToString();

        var first = await PostWithKeyAsync("idem", key, Jsonl.Lines(10, "idem"));
        var second = await PostWithKeyAsync("idem", key, Jsonl.Lines(10, "idem"));

        Assert.Equal((HttpStatusCode.Created, HttpStatusCode.OK), (first.StatusCode, second.StatusCode));
        var firstId = (await first.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString();
        Assert.Equal(firstId, (await second.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString());
        Assert.Equal("true", second.Headers.GetValues("Idempotent-Replayed").Single());
        var listed = await Http.GetFromJsonAsync<JsonElement>("/v1/batches?limit=1000", Ct);
        Assert.Single(listed.GetProperty("items").EnumerateArray(), b => b.GetProperty("pool").GetString() == "idem");
    }

    [Fact]
    public async Task Results_StreamWhileTheBatchRuns_AndPauseResumeCancel_FollowTheRules()
    {
        await CreatePoolAsync("slow", maxRunning: 1);
        var created = await Http.PostAsync("/v1/batches?pool=slow", Ndjson(Jsonl.Lines(400, "slow")), Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        await Eventually.MatchesAsync(() => BatchAsync(id), batch => batch.GetProperty("counts").GetProperty("succeeded").GetInt64() >= 20,
            batch => $"fewer than 20 items succeeded: {batch}");

        var partial = (await Http.GetStringAsync($"/v1/batches/{id}/results", Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.InRange(partial.Length, 20, 399);

        Assert.Equal("paused", (await ControlAsync(id, "pause")).GetProperty("state").GetString());
        await Task.Delay(300, Ct);
        var paused = (await BatchAsync(id)).GetProperty("counts").GetProperty("succeeded").GetInt64();
        await Task.Delay(500, Ct);
        Assert.Equal(paused, (await BatchAsync(id)).GetProperty("counts").GetProperty("succeeded").GetInt64());

        Assert.Equal("running", (await ControlAsync(id, "resume")).GetProperty("state").GetString());
        Assert.Equal("cancelled", (await ControlAsync(id, "cancel")).GetProperty("state").GetString());
        var finished = await host.WaitUntilFinishedAsync(id, TimeSpan.FromSeconds(10));
        Assert.Equal(400, finished.GetProperty("counts").GetProperty("succeeded").GetInt64() + finished.GetProperty("counts").GetProperty("cancelled").GetInt64());
        await AssertProblemAsync(await Http.PostAsync($"/v1/batches/{id}/resume", null, Ct), HttpStatusCode.Conflict, "is cancelled; it cannot resume");
        await AssertProblemAsync(await Http.PostAsync($"/v1/batches/{id}/pause", null, Ct), HttpStatusCode.Conflict, "cannot pause");
        Assert.Contains((await Http.GetFromJsonAsync<JsonElement>("/v1/batches?state=cancelled", Ct)).GetProperty("items").EnumerateArray(), b => b.GetProperty("id").GetString() == id);
    }

    [Fact]
    public async Task Cluster_HealthAndOpenApi_Answer()
    {
        var silos = await Http.GetFromJsonAsync<JsonElement>("/v1/silos", Ct);
        Assert.Equal("active", Assert.Single(silos.EnumerateArray()).GetProperty("status").GetString());
        Assert.Equal(HttpStatusCode.OK, (await Http.GetAsync("/health/live", Ct)).StatusCode);
        Assert.Equal("ready", (await Http.GetFromJsonAsync<JsonElement>("/health/ready", Ct)).GetProperty("status").GetString());
        var openApi = await Http.GetFromJsonAsync<JsonElement>("/openapi/v1.json", Ct);
        var paths = openApi.GetProperty("paths").EnumerateObject().Select(p => p.Name).ToList();
        Assert.Contains("/v1/batches/{id}/results", paths);
        Assert.Contains("/v1/pools/{name}", paths);
        await AssertProblemAsync(await Http.GetAsync("/v1/batches?state=sleeping", Ct), HttpStatusCode.BadRequest, "state: 'sleeping'");
    }

    private static StringContent Ndjson(string lines) => new(lines, Encoding.UTF8, "application/x-ndjson");

    private static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);

    private async Task<HttpResponseMessage> PostWithKeyAsync(string pool, string idempotencyKey, string lines, string options = "")
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, $"/v1/batches?pool={pool}{options}") { Content = Ndjson(lines) };
        request.Headers.Add("Idempotency-Key", idempotencyKey);
        return await Http.SendAsync(request, Ct);
    }

    private async Task CreatePoolAsync(string name, int maxRunning) =>
        Assert.Equal(HttpStatusCode.OK, (await Http.PutAsJsonAsync($"/v1/pools/{name}", new { maxRunning }, Ct)).StatusCode);

    private async Task<JsonElement> BatchAsync(string id) => await Http.GetFromJsonAsync<JsonElement>($"/v1/batches/{id}", Ct);

    private async Task<JsonElement> ControlAsync(string id, string action)
    {
        var response = await Http.PostAsync($"/v1/batches/{id}/{action}", null, Ct);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
    }

    /// <summary>Every batch in the catalogue with its item count, and the item rows in the store.</summary>
    private async Task<(int Batches, long Items)> CatalogueAsync()
    {
        var batches = await host.Store.ListBatchesAsync(null, 0, 10_000, Ct);
        long items = 0;
        foreach (var batch in batches)
        {
            items += (await host.Store.CountAsync(batch.BatchId, Ct)).Total;
        }

        return (batches.Count, items);
    }

    private static async Task AssertProblemAsync(HttpResponseMessage response, HttpStatusCode status, string detail, string? because = null)
    {
        var body = await response.Content.ReadAsStringAsync(Ct);
        Assert.True(status == response.StatusCode, $"{because}: expected {status}, got {response.StatusCode}: {body}");
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = JsonDocument.Parse(body).RootElement;
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        Assert.Contains(detail, problem.GetProperty("detail").GetString());
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
