using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Nightshift.MockModel;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Models;

public sealed class PricedApiHost : ApiHost
{
    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Nightshift:Prices:priced-model:InputPerMillion"] = "2",
        ["Nightshift:Prices:priced-model:OutputPerMillion"] = "8",
        ["Nightshift:Prices:priced-model:CachedInputPerMillion"] = "0.5",
    };
}

/// <summary>Tokens (cached included) and cost from the price table, per batch and per pool, as the HTTP API shows them; pool pause and resume.</summary>
public sealed class UsageAndCostApiTests(PricedApiHost host) : IClassFixture<PricedApiHost>
{
    private const string Answer = """{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1000,"completion_tokens":100,"total_tokens":1100,"prompt_tokens_details":{"cached_tokens":400}}}""";

    private HttpClient Http => host.Http;

    [Fact]
    public async Task BatchAndPool_CarryInputOutputCachedTokens_AndTheirCost()
    {
        await using var mock = await MockModelServer.StartAsync(new MockModelOptions { Respond = _ => new MockResponse(200, Answer) }, Ct);
        var pool = await Http.PutAsJsonAsync("/v1/pools/priced", new { provider = "openai", endpoint = new Uri(mock.BaseAddress, "v1").ToString(), model = "priced-model", maxRunning = 4 }, Ct);
        Assert.Equal(HttpStatusCode.OK, pool.StatusCode);
        var items = Enumerable.Range(0, 10).Select(i => new { custom_id = $"p-{i}", body = new { messages = new[] { new { role = "user", content = $"q{i}" } } } });
        var created = await Http.PostAsJsonAsync("/v1/batches", new { pool = "priced", items }, Ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;

        var batch = await host.WaitUntilFinishedAsync(id, TimeSpan.FromSeconds(30));

        // 6,000 uncached input tokens at 2, 4,000 cached at 0.5 and 1,000 output at 8, per million.
        Assert.Equal((10_000L, 1_000L, 4_000L), (batch.GetProperty("inputTokens").GetInt64(), batch.GetProperty("outputTokens").GetInt64(), batch.GetProperty("cachedTokens").GetInt64()));
        Assert.Equal(0.022m, batch.GetProperty("cost").GetDecimal());
        var view = await Http.GetFromJsonAsync<JsonElement>("/v1/pools/priced", Ct);
        Assert.Equal((10_000L, 1_000L, 4_000L), (view.GetProperty("inputTokens").GetInt64(), view.GetProperty("outputTokens").GetInt64(), view.GetProperty("cachedTokens").GetInt64()));
        Assert.Equal(0.022m, view.GetProperty("cost").GetDecimal());
        Assert.Equal(10, mock.Stats.Total);
    }

    [Fact]
    public async Task ModelWithoutAPrice_HasNoCost_RatherThanZero()
    {
        await Http.PutAsJsonAsync("/v1/pools/unpriced", new { maxRunning = 2 }, Ct);
        var created = await Http.PostAsJsonAsync("/v1/batches", new { pool = "unpriced", items = new[] { new { custom_id = "u", body = new { messages = Array.Empty<object>() } } } }, Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;

        var batch = await host.WaitUntilFinishedAsync(id, TimeSpan.FromSeconds(30));

        Assert.True(batch.GetProperty("inputTokens").GetInt64() > 0);
        Assert.Equal(JsonValueKind.Null, batch.GetProperty("cost").ValueKind);
        Assert.Equal(JsonValueKind.Null, (await Http.GetFromJsonAsync<JsonElement>("/v1/pools/unpriced", Ct)).GetProperty("cost").ValueKind);
    }

    [Fact]
    public async Task Pool_PausesAndResumes_OverHttp_SayingWhy()
    {
        await Http.PutAsJsonAsync("/v1/pools/pausable", new { maxRunning = 2 }, Ct);

        var paused = await (await Http.PostAsJsonAsync("/v1/pools/pausable/pause", new { reason = "quota review" }, Ct)).Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.True(paused.GetProperty("paused").GetBoolean());
        Assert.Equal("quota review", paused.GetProperty("pausedReason").GetString());
        var created = await Http.PostAsJsonAsync("/v1/batches", new { pool = "pausable", items = new[] { new { custom_id = "w", body = new { messages = Array.Empty<object>() } } } }, Ct);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        await Task.Delay(TimeSpan.FromMilliseconds(500), Ct);
        Assert.Equal(0, (await Http.GetFromJsonAsync<JsonElement>($"/v1/batches/{id}", Ct)).GetProperty("counts").GetProperty("succeeded").GetInt64());

        var resumed = await (await Http.PostAsync("/v1/pools/pausable/resume", null, Ct)).Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.False(resumed.GetProperty("paused").GetBoolean());
        Assert.Equal(JsonValueKind.Null, resumed.GetProperty("pausedReason").ValueKind);
        var batch = await host.WaitUntilFinishedAsync(id, TimeSpan.FromSeconds(30));
        Assert.Equal(1, batch.GetProperty("counts").GetProperty("succeeded").GetInt64());
        Assert.Equal(HttpStatusCode.NotFound, (await Http.PostAsync("/v1/pools/no-such-pool/pause", null, Ct)).StatusCode);
    }

    [Fact]
    public async Task AzurePool_NeedsEndpointAndDeployment()
    {
        var missing = await Http.PutAsJsonAsync("/v1/pools/az", new { provider = "azure", endpoint = "https://r.openai.azure.com" }, Ct);
        Assert.Equal(HttpStatusCode.BadRequest, missing.StatusCode);
        Assert.Contains("model: the deployment name", await missing.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);

        var ok = await (await Http.PutAsJsonAsync("/v1/pools/az", new { provider = "azure", endpoint = "https://r.openai.azure.com", model = "gpt4o-prod" }, Ct)).Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal(("azure", "gpt4o-prod"), (ok.GetProperty("provider").GetString(), ok.GetProperty("model").GetString()));
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
