using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Pools;

/// <summary>
/// A pool shared by several models (pydantic-ai's shared limiter), through the real HTTP API of a real
/// silo, against the mock model as a process: each line's <c>body.model</c> picks the model it calls, and
/// all of them share the pool's cap, as the mock counts it.
/// </summary>
public sealed class SharedModelPoolTests(ApiHost host) : IClassFixture<ApiHost>
{

    [Fact]
    public async Task EachLineCallsTheModelItNames_OrThePoolsDefault_AndTheyShareOneCap()
    {
        using var mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "30", "60"], Ct);
        var pool = await host.Http.PutAsJsonAsync("/v1/pools/shared",
            new { provider = "openai", endpoint = new Uri(mock.BaseAddress, "v1").ToString(), models = new[] { "m-small", "m-big" }, maxRunning = 3 }, Ct);
        Assert.Equal(HttpStatusCode.OK, pool.StatusCode);
        var view = await pool.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal(("m-small", 2), (view.GetProperty("model").GetString(), view.GetProperty("models").GetArrayLength()));

        string?[] asked = ["m-small", "m-big", null];
        var lines = string.Concat(Enumerable.Range(0, 30).Select(i => Line($"shared-{i}", asked[i % 3]) + "\n"));
        var submitted = await host.Http.PostAsync("/v1/batches?pool=shared", new StringContent(lines, Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, submitted.StatusCode);
        var id = (await submitted.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        Assert.Equal(30L, (await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1))).GetProperty("counts").GetProperty("succeeded").GetInt64());

        var results = (await host.Http.GetStringAsync($"/v1/batches/{id}/results", Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(line => JsonDocument.Parse(line).RootElement).ToList();
        Assert.All(results, result =>
        {
            var index = int.Parse(result.GetProperty("custom_id").GetString()!["shared-".Length..], System.Globalization.CultureInfo.InvariantCulture);
            Assert.Equal(asked[index % 3] ?? "m-small", result.GetProperty("response").GetProperty("body").GetProperty("model").GetString());
        });
        Assert.InRange((await mock.StatsAsync(Ct)).Peak, 1, 3);
    }

    [Fact]
    public async Task ALineNamingAModelThePoolDoesNotHave_IsRefused_NamingTheLine_AndBadModelListsAre400()
    {
        var pool = await host.Http.PutAsJsonAsync("/v1/pools/shared-strict", new { models = new[] { "a", "b" }, maxRunning = 2 }, Ct);
        Assert.Equal(HttpStatusCode.OK, pool.StatusCode);

        var refused = await host.Http.PostAsync("/v1/batches?pool=shared-strict",
            new StringContent($"{Line("ok", "a")}\n{Line("other", "c")}\n", Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains("line 2, field 'body.model': 'c' is not one of pool 'shared-strict''s models: a, b",
            (await refused.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("detail").GetString(), StringComparison.Ordinal);

        foreach (var (body, detail) in new[]
        {
            ("""{"models": []}""", "models: 1 to 64 distinct, non-empty model names"),
            ("""{"models": ["a", "a"]}""", "models: 1 to 64 distinct"),
            ("""{"models": ["a"], "model": "b"}""", "model: 'b' is not one of models"),
        })
        {
            var bad = await host.Http.PutAsync("/v1/pools/shared-bad", new StringContent(body, Encoding.UTF8, "application/json"), Ct);
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
            Assert.Contains(detail, (await bad.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("detail").GetString(), StringComparison.Ordinal);
        }
    }

    private static string Line(string customId, string? model) => JsonSerializer.Serialize(new Dictionary<string, object>
    {
        ["custom_id"] = customId,
        ["body"] = model is null
            ? new Dictionary<string, object> { ["messages"] = new[] { new { role = "user", content = customId } } }
            : new Dictionary<string, object> { ["model"] = model, ["messages"] = new[] { new { role = "user", content = customId } } },
    });

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
