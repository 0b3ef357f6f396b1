using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Api;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Pools;

/// <summary>
/// Teams' and users' limits through the real HTTP API of a real silo, each user's batch submitted with that user's key,
/// against the mock model as a process that counts each user's calls in flight itself (by the custom ids' prefix).
/// </summary>
public sealed class TeamLimitTests(TeamsApiHost host) : IClassFixture<TeamsApiHost>
{
    private static readonly JsonSerializerOptions StatsJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    [Fact]
    public async Task AUsersModelLimit_OutranksItsTeams_TheTeamsOtherUsersKeepTheTeamLimit_AndAnotherTeamIsNotHeldUp()
    {
        using var mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "150", "200"], Ct);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Put, "/v1/pools/stack", TeamsApiHost.AdminKey,
            JsonSerializer.Serialize(new { provider = "openai", endpoint = new Uri(mock.BaseAddress, "v1").ToString(), model = "m", maxRunning = 30 }))).StatusCode);

        // Bad documents and a user's key are refused, naming the field; nothing is set.
        foreach (var (body, detail) in new[]
        {
            ("""{"maxRunnin": 2}""", "unknown field 'maxRunnin'"),
            ("""{"maxRunning": -1}""", "maxRunning: a whole number from 0 to 100000"),
            ("""{"models": {"other": {"maxRunning": 2}}}""", "models.other: the pool has no model 'other'"),
            ("""{"models": {"m": {"maxRunning": 2.5}}}""", "models.m.maxRunning: a whole number"),
            ("""{"models": {"m": {}}}""", "models.m: maxRunning, rpm or tpm, at least one"),
            ("""{"models": {"m": {"tpm": "fast"}}}""", "models.m.tpm: a number more than 0"),
            ("""{"rpm": 0}""", "rpm: a number more than 0"),
        })
        {
            var refused = await SendAsync(HttpMethod.Put, "/v1/pools/stack/limits/teams/research", TeamsApiHost.AdminKey, body);
            Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
            Assert.Contains(detail, (await refused.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("detail").GetString(), StringComparison.Ordinal);
        }

        Assert.Contains("weight: only a team", await (await SendAsync(HttpMethod.Put, "/v1/pools/stack/limits/users/alice", TeamsApiHost.AdminKey, """{"weight": 2}""")).Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Put, "/v1/pools/stack/limits/users/alice", "alice-key", """{"maxRunning": 50}""")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(HttpMethod.Delete, "/v1/pools/stack/limits/users/alice", TeamsApiHost.AdminKey)).StatusCode);
        Assert.Empty(JsonDocument.Parse(await (await SendAsync(HttpMethod.Get, "/v1/pools/stack/limits", "alice-key")).Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("teams").EnumerateObject());

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Put, "/v1/pools/stack/limits/teams/research", TeamsApiHost.AdminKey, """{"models": {"m": {"maxRunning": 2}}}""")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Put, "/v1/pools/stack/limits/users/alice", TeamsApiHost.AdminKey, """{"models": {"m": {"maxRunning": 6}}}""")).StatusCode);

        // Three teams at once: research (alice, bob) at its model limit, support (carol) and ops (erin) with none.
        var batches = new[] { ("alice-key", "alice"), ("bob-key", "bob"), ("carol-key", "carol"), ("erin-key", "erin") };
        var ids = new List<(string Key, string Id)>();
        foreach (var (key, user) in batches)
        {
            ids.Add((key, await SubmitAsync(key, user)));
        }

        // While they run, the pool shows what runs under each limit.
        var live = await Eventually.MatchesAsync(async () => JsonDocument.Parse(await (await SendAsync(HttpMethod.Get, "/v1/pools/stack/limits", TeamsApiHost.AdminKey))
            .Content.ReadAsStringAsync(Ct)).RootElement, limits => limits.GetProperty("users").GetProperty("alice").GetProperty("running").GetInt32() > 0, limits => limits.ToString());
        Assert.InRange(live.GetProperty("teams").GetProperty("research").GetProperty("runningByModel").GetProperty("m").GetInt32(), 0, 2);
        Assert.Equal(2, live.GetProperty("teams").GetProperty("research").GetProperty("models").GetProperty("m").GetProperty("maxRunning").GetInt32());

        foreach (var (key, id) in ids)
        {
            await Eventually.HoldsAsync(async () => (await (await SendAsync(HttpMethod.Get, $"/v1/batches/{id}", key)).Content.ReadAsStringAsync(Ct))
                .Contains("\"state\":\"completed\"", StringComparison.Ordinal), () => $"batch {id} did not complete", TimeSpan.FromMinutes(2));
        }

        var stats = await mock.StatsAsync(Ct);
        Assert.Equal(6, stats.PeakByGroup["alice"]);
        Assert.Equal(2, stats.PeakByGroup["bob"]);
        Assert.InRange(stats.PeakByGroup["carol"], 3, 30);
        Assert.InRange(stats.PeakByGroup["erin"], 3, 30);
        Assert.InRange(stats.Peak, 1, 30);
        Assert.Equal(HttpStatusCode.NoContent, (await SendAsync(HttpMethod.Delete, "/v1/pools/stack/limits/users/alice", TeamsApiHost.AdminKey)).StatusCode);
    }

    [Fact]
    public async Task AUsersRequestRate_PacesItsCalls_AsTheMockSeesThemArrive()
    {
        using var mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "5", "10"], Ct);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Put, "/v1/pools/paced", TeamsApiHost.AdminKey,
            JsonSerializer.Serialize(new { provider = "openai", endpoint = new Uri(mock.BaseAddress, "v1").ToString(), model = "m", maxRunning = 8 }))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Put, "/v1/pools/paced/limits/users/carol", TeamsApiHost.AdminKey, """{"rpm": 120}""")).StatusCode);

        var id = await SubmitAsync("carol-key", "paced", "paced", 9);
        await Eventually.HoldsAsync(async () => (await (await SendAsync(HttpMethod.Get, $"/v1/batches/{id}", "carol-key")).Content.ReadAsStringAsync(Ct))
            .Contains("\"state\":\"completed\"", StringComparison.Ordinal), () => $"batch {id} did not complete", TimeSpan.FromMinutes(1));

        var limits = JsonDocument.Parse(await (await SendAsync(HttpMethod.Get, "/v1/pools/paced/limits", "carol-key")).Content.ReadAsStringAsync(Ct)).RootElement;
        Assert.Equal(120, limits.GetProperty("users").GetProperty("carol").GetProperty("rpm").GetDouble());
        Assert.InRange(limits.GetProperty("users").GetProperty("carol").GetProperty("requestsAvailable").GetDouble(), -1, 2);

        // 2 calls a second with a burst of one second's: 9 calls take at least 3.5 s, and no second sees more than 4 begin.
        using var client = new HttpClient { BaseAddress = mock.BaseAddress };
        var arrivals = (await client.GetFromJsonAsync<long[]>("stats/arrivals", StatsJson, Ct))!;
        Assert.Equal(9, arrivals.Length);
        Assert.True(arrivals[^1] - arrivals[0] >= 3_000, $"9 calls arrived within {arrivals[^1] - arrivals[0]} ms");
        Assert.All(arrivals, first => Assert.InRange(arrivals.Count(at => at >= first && at < first + 1_000), 1, 4));
    }

    [Fact]
    public async Task ABatchWhoseLinesNameSeveralModels_NeverPassesItsTeamsLimitForAnyOfThem()
    {
        using var mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "100", "150"], Ct);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Put, "/v1/pools/mixed", TeamsApiHost.AdminKey,
            JsonSerializer.Serialize(new { provider = "openai", endpoint = new Uri(mock.BaseAddress, "v1").ToString(), models = new[] { "a", "b" }, maxRunning = 20 }))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Put, "/v1/pools/mixed/limits/teams/research", TeamsApiHost.AdminKey,
            """{"models": {"b": {"maxRunning": 2}}}""")).StatusCode);

        // Half the lines call a, half b: any call of the batch may be one of b's, so b's limit holds the whole batch.
        var lines = string.Concat(Enumerable.Range(0, 24).Select(i => JsonSerializer.Serialize(new
        {
            custom_id = $"mix{(i % 2 == 0 ? "a" : "b")}-{i}",
            body = new { model = i % 2 == 0 ? "a" : "b", messages = new[] { new { role = "user", content = $"line {i}" } } },
        }) + "\n"));
        var submitted = await SendAsync(HttpMethod.Post, "/v1/batches?pool=mixed", "bob-key", lines, "application/x-ndjson");
        Assert.Equal(HttpStatusCode.Created, submitted.StatusCode);
        var id = (await submitted.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        await Eventually.HoldsAsync(async () => (await (await SendAsync(HttpMethod.Get, $"/v1/batches/{id}", "bob-key")).Content.ReadAsStringAsync(Ct))
            .Contains("\"state\":\"completed\"", StringComparison.Ordinal), () => $"batch {id} did not complete", TimeSpan.FromMinutes(1));

        var stats = await mock.StatsAsync(Ct);
        Assert.Equal((12, 12), (stats.CallsByModel["a"], stats.CallsByModel["b"]));
        Assert.InRange(stats.PeakByGroup["mixb"], 1, 2);
        Assert.InRange(stats.Peak, 1, 2);
    }

    [Fact]
    public async Task ATeamsBigBatch_DoesNotStarveAnotherTeamsSmallOne_SubmittedAfterIt()
    {
        using var mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "100"], Ct);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Put, "/v1/pools/fair", TeamsApiHost.AdminKey,
            JsonSerializer.Serialize(new { provider = "openai", endpoint = new Uri(mock.BaseAddress, "v1").ToString(), model = "m", maxRunning = 4 }))).StatusCode);

        // Research's batch alone would hold the whole pool for at least 300 × 100 ms / 4 = 7.5 s.
        var big = await SubmitAsync("alice-key", "bigr", "fair", 300);
        await Eventually.HoldsAsync(async () => (await mock.StatsAsync(Ct)).Current == 4, () => "the big batch never filled the pool");

        var small = await SubmitAsync("carol-key", "smalls", "fair", 8);
        await Eventually.HoldsAsync(async () => (await (await SendAsync(HttpMethod.Get, $"/v1/batches/{small}", "carol-key")).Content.ReadAsStringAsync(Ct))
            .Contains("\"state\":\"completed\"", StringComparison.Ordinal), () => $"batch {small} did not complete", TimeSpan.FromMinutes(1));

        // The small batch got its team's share at once: done while most of the big one still waits.
        var bigNow = JsonDocument.Parse(await (await SendAsync(HttpMethod.Get, $"/v1/batches/{big}", "alice-key")).Content.ReadAsStringAsync(Ct)).RootElement;
        Assert.Equal("running", bigNow.GetProperty("state").GetString());
        Assert.True(bigNow.GetProperty("counts").GetProperty("pending").GetInt64() > 150, bigNow.ToString());
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Post, $"/v1/batches/{big}/cancel", "alice-key")).StatusCode);
    }

    private Task<string> SubmitAsync(string key, string user) => SubmitAsync(key, user, "stack", 40);

    private async Task<string> SubmitAsync(string key, string user, string pool, int items)
    {
        var submitted = await SendAsync(HttpMethod.Post, $"/v1/batches?pool={pool}", key, Jsonl.Lines(items, user), "application/x-ndjson");
        Assert.Equal(HttpStatusCode.Created, submitted.StatusCode);
        return (await submitted.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string key, string? body = null, string contentType = "application/json")
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, contentType);
        }

        return await host.Http.SendAsync(request, Ct);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
