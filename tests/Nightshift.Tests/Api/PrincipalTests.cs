using System.ComponentModel.DataAnnotations;
using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Nightshift.Api;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Api;

/// <summary>A silo whose API knows an admin key and four users in two teams, one of them an admin.</summary>
public sealed class TeamsApiHost : ApiHost
{
    public const string AdminKey = "admin-key-51c2";

    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Nightshift:Api:Keys:0"] = AdminKey,
        ["Nightshift:Api:Principals:alice:Key"] = "alice-key",
        ["Nightshift:Api:Principals:alice:Team"] = "research",
        ["Nightshift:Api:Principals:bob:Key"] = "bob-key",
        ["Nightshift:Api:Principals:bob:Team"] = "research",
        ["Nightshift:Api:Principals:carol:Key"] = "carol-key",
        ["Nightshift:Api:Principals:carol:Team"] = "support",
        ["Nightshift:Api:Principals:erin:Key"] = "erin-key",
        ["Nightshift:Api:Principals:erin:Team"] = "ops",
        ["Nightshift:Api:Principals:dan:Key"] = "dan-key",
        ["Nightshift:Api:Principals:dan:Admin"] = "true",
        ["Nightshift:Pools:declared:MaxRunning"] = "4",
        ["Nightshift:Pools:declared:Limits:Teams:support:MaxRunning"] = "3",
        ["Nightshift:Pools:declared:Limits:Teams:support:Weight"] = "2",
        ["Nightshift:Pools:declared:Limits:Users:alice:Models:nightshift-sim:MaxRunning"] = "1",
    };
}

/// <summary>Keys with identities, through real HTTP: each team sees and controls its own batches only, and only admins change pools.</summary>
public sealed class PrincipalTests(TeamsApiHost host) : IClassFixture<TeamsApiHost>
{
    [Fact]
    public async Task AUsersBatches_AreItsTeams_AnotherTeamGets404_AndOnlyAdminsChangePools()
    {
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Put, "/v1/pools/teams", "alice-key", """{"maxRunning": 4}""")).StatusCode);
        var forbidden = await SendAsync(HttpMethod.Post, "/v1/pools/teams/pause", "carol-key");
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
        Assert.Contains("admin key", await forbidden.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Put, "/v1/pools/teams", TeamsApiHost.AdminKey, """{"maxRunning": 4}""")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Put, "/v1/pools/teams", "dan-key", """{"maxRunning": 4}""")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/v1/pools/teams", "alice-key")).StatusCode);

        // The same idempotency key from two teams: two batches, each its team's.
        var research = await SubmitAsync("alice-key", "nightly");
        var support = await SubmitAsync("carol-key", "nightly");
        Assert.NotEqual(research, support);

        Assert.Equal([research], await ListAsync("alice-key"));
        Assert.Equal([research], await ListAsync("bob-key"));
        Assert.Equal([support], await ListAsync("carol-key"));
        Assert.Equal([research, support], (await ListAsync(TeamsApiHost.AdminKey)).Order());
        Assert.Equal([research, support], (await ListAsync("dan-key")).Order());
        var summary = JsonDocument.Parse(await (await SendAsync(HttpMethod.Get, "/v1/batches", "carol-key")).Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("items")[0];
        Assert.Equal(("carol", "support"), (summary.GetProperty("owner").GetProperty("user").GetString(), summary.GetProperty("owner").GetProperty("team").GetString()));

        await Eventually.HoldsAsync(async () => (await (await SendAsync(HttpMethod.Get, $"/v1/batches/{research}", "alice-key")).Content.ReadAsStringAsync(Ct))
            .Contains("\"state\":\"completed\"", StringComparison.Ordinal), () => $"batch {research} did not complete");
        foreach (var path in new[] { "", "/results", "/items/team-0", "/failures", "/webhooks" })
        {
            Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(HttpMethod.Get, $"/v1/batches/{research}{path}", "carol-key")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, $"/v1/batches/{research}{path}", "bob-key")).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, $"/v1/batches/{research}{path}", TeamsApiHost.AdminKey)).StatusCode);
        }

        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(HttpMethod.Post, $"/v1/batches/{support}/cancel", "alice-key")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await SendAsync(HttpMethod.Post, $"/v1/batches/{support}/retry", "alice-key")).StatusCode);
        // The feeds show a user no other team's batch: its own team's throughput only, and no batch events at all.
        var held = await SubmitAsync("alice-key", "held", items: 2000);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Post, $"/v1/batches/{held}/pause", "alice-key")).StatusCode);
        await Eventually.HoldsAsync(async () => (await (await SendAsync(HttpMethod.Get, "/v1/dashboard/history", "bob-key")).Content.ReadAsStringAsync(Ct))
            .Contains(held, StringComparison.Ordinal), () => "the team's paused batch never showed in its history");
        Assert.DoesNotContain(held, await (await SendAsync(HttpMethod.Get, "/v1/dashboard/history", "carol-key")).Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        Assert.DoesNotContain("\"kind\":\"batch\"", await (await SendAsync(HttpMethod.Get, "/v1/events", "carol-key")).Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Post, $"/v1/batches/{held}/cancel", "bob-key")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Get, "/orleans/", "alice-key")).StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, (await SendAsync(HttpMethod.Get, "/metrics", "alice-key")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(HttpMethod.Get, "/v1/batches", "nobody-key")).StatusCode);
    }

    [Fact]
    public async Task LimitsDeclaredInConfiguration_AreThePools()
    {
        var limits = JsonDocument.Parse(await (await SendAsync(HttpMethod.Get, "/v1/pools/declared/limits", "carol-key")).Content.ReadAsStringAsync(Ct)).RootElement;

        var support = limits.GetProperty("teams").GetProperty("support");
        Assert.Equal((3, 2.0), (support.GetProperty("maxRunning").GetInt32(), support.GetProperty("weight").GetDouble()));
        Assert.Equal(1, limits.GetProperty("users").GetProperty("alice").GetProperty("models").GetProperty("nightshift-sim").GetProperty("maxRunning").GetInt32());
    }

    [Fact]
    public void APrincipalWithoutAKeyOrATeam_OrWithAnotherOnesKey_IsRefusedNamingIt()
    {
        var options = new ApiOptions
        {
            Keys = ["shared-key"],
            Principals = new(StringComparer.Ordinal)
            {
                ["erin"] = new PrincipalOptions { Team = "x" },
                ["fay"] = new PrincipalOptions { Key = "fay-key" },
                ["gus"] = new PrincipalOptions { Key = "shared-key", Team = "y" },
                ["hal"] = new PrincipalOptions { Key = "hal-key", Admin = true },
            },
        };

        var errors = options.Validate(new ValidationContext(options)).Select(error => error.ErrorMessage!).ToList();

        Assert.Equal(3, errors.Count);
        Assert.Contains(errors, error => error.StartsWith("Nightshift:Api:Principals:erin:Key: required", StringComparison.Ordinal));
        Assert.Contains(errors, error => error.StartsWith("Nightshift:Api:Principals:fay:Team: required", StringComparison.Ordinal));
        Assert.Contains(errors, error => error.StartsWith("Nightshift:Api:Principals:gus:Key: the same key", StringComparison.Ordinal));
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private async Task<string> SubmitAsync(string key, string idempotencyKey, int items = 5)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v1/batches?pool=teams")
        {
            Content = new StringContent(Jsonl.Lines(items, "team"), Encoding.UTF8, "application/x-ndjson"),
        };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        request.Headers.Add("Idempotency-Key", idempotencyKey);
        var response = await host.Http.SendAsync(request, Ct);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return JsonDocument.Parse(await response.Content.ReadAsStringAsync(Ct)).RootElement.GetProperty("id").GetString()!;
    }

    private async Task<List<string>> ListAsync(string key)
    {
        var page = JsonDocument.Parse(await (await SendAsync(HttpMethod.Get, "/v1/batches", key)).Content.ReadAsStringAsync(Ct)).RootElement;
        return [.. page.GetProperty("items").EnumerateArray().Select(batch => batch.GetProperty("id").GetString()!)];
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string key, string? json = null)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        if (json is not null)
        {
            request.Content = new StringContent(json, Encoding.UTF8, "application/json");
        }

        return await host.Http.SendAsync(request, Ct);
    }
}
