using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Cluster;

/// <summary>
/// A team's limit on three <c>serve</c> silos sharing one PostgreSQL database: its users' batches, submitted through
/// different silos, never run more calls together than the limit, as the mock model (one process for all) counts them.
/// </summary>
public sealed class TeamLimitClusterTests : IAsyncLifetime
{
    private const string AdminKey = "cluster-admin-key";

    private ServeCluster _serve = null!;

    public async ValueTask InitializeAsync() => _serve = await ServeCluster.StartAsync(["--latency-ms", "100", "150"], 3, new Dictionary<string, string>
    {
        ["Nightshift__Api__Keys__0"] = AdminKey,
        ["Nightshift__Api__Principals__alice__Key"] = "alice-key",
        ["Nightshift__Api__Principals__alice__Team"] = "research",
        ["Nightshift__Api__Principals__bob__Key"] = "bob-key",
        ["Nightshift__Api__Principals__bob__Team"] = "research",
        ["Nightshift__Api__Principals__carol__Key"] = "carol-key",
        ["Nightshift__Api__Principals__carol__Team"] = "support",
    });

    public async ValueTask DisposeAsync() => await _serve.DisposeAsync();

    [Fact]
    public async Task ATeamsLimit_HoldsAcrossSilos_WhileAnotherTeamUsesTheRestOfThePool()
    {
        var silos = _serve.Silos.Members;
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(silos[0].Client, HttpMethod.Put, "/v1/pools/shared", AdminKey, _serve.PoolJson(12))).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(silos[1].Client, HttpMethod.Put, "/v1/pools/shared/limits/teams/research", AdminKey, """{"maxRunning": 4}""")).StatusCode);

        // Both research users' items are "research-…" to the mock, which counts the team's calls in flight as one group.
        var batches = new List<(HttpClient Client, string Key, string Id)>();
        foreach (var (member, key, ids) in new[] { (silos[0], "alice-key", "research-a"), (silos[1], "bob-key", "research-b"), (silos[2], "carol-key", "support") })
        {
            var lines = string.Concat(Enumerable.Range(0, 40).Select(i => Jsonl.Line(ids == "support" ? $"support-{i}" : $"research-{ids[^1]}{i}", $"prompt {i}") + "\n"));
            var created = await SendAsync(member.Client, HttpMethod.Post, "/v1/batches?pool=shared", key, lines, "application/x-ndjson");
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            batches.Add((member.Client, key, (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!));
        }

        foreach (var (client, key, id) in batches)
        {
            await Eventually.HoldsAsync(async () => (await (await SendAsync(client, HttpMethod.Get, $"/v1/batches/{id}", key)).Content.ReadAsStringAsync(Ct))
                .Contains("\"state\":\"completed\"", StringComparison.Ordinal), () => $"batch {id} did not complete", TimeSpan.FromMinutes(2));
        }

        var stats = await _serve.StatsAsync();
        Assert.Equal(4, stats.PeakByGroup["research"]);
        Assert.InRange(stats.PeakByGroup["support"], 5, 12);
        Assert.InRange(stats.Peak, 1, 12);
        Assert.Equal(120, stats.Calls.Count);
    }

    private static async Task<HttpResponseMessage> SendAsync(HttpClient client, HttpMethod method, string path, string key, string? body = null, string contentType = "application/json")
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (body is not null)
        {
            request.Content = new StringContent(body, Encoding.UTF8, contentType);
        }

        return await client.SendAsync(request, Ct);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
