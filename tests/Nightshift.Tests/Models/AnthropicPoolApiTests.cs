using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Models;

/// <summary>A pool with <c>provider: "anthropic"</c> through the real HTTP API of a real silo, against the Messages API mock as a process.</summary>
public sealed class AnthropicPoolApiTests(ApiHost host) : IClassFixture<ApiHost>
{
    private const string KeyVariable = "NIGHTSHIFT_TEST_ANTHROPIC_POOL_KEY";

    private HttpClient Http => host.Http;

    [Fact]
    public async Task AnthropicPool_RunsABatch_AndAnswersInTheChatCompletionFormat()
    {
        Environment.SetEnvironmentVariable(KeyVariable, "sk-ant-pool");
        using var mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "5", "15"], Ct);

        var created = await Http.PutAsJsonAsync("/v1/pools/claude",
            new { provider = "anthropic", endpoint = mock.BaseAddress.ToString(), model = "claude-test", apiKeyEnv = KeyVariable, maxRunning = 3 }, Ct);
        Assert.Equal(HttpStatusCode.OK, created.StatusCode);
        var view = await created.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal(("anthropic", "claude-test", KeyVariable), (view.GetProperty("provider").GetString(), view.GetProperty("model").GetString(), view.GetProperty("apiKeyEnv").GetString()));

        var submitted = await Http.PostAsync("/v1/batches?pool=claude", new StringContent(Jsonl.Lines(12, "api-claude"), Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, submitted.StatusCode);
        var id = (await submitted.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
        var batch = await host.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));
        Assert.Equal(("completed", 12L), (batch.GetProperty("state").GetString(), batch.GetProperty("counts").GetProperty("succeeded").GetInt64()));

        var results = (await Http.GetStringAsync($"/v1/batches/{id}/results", Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(12, results.Length);
        Assert.All(results, line => Assert.Equal("chat.completion",
            JsonDocument.Parse(line).RootElement.GetProperty("response").GetProperty("body").GetProperty("object").GetString()));
        using var client = new HttpClient { BaseAddress = mock.BaseAddress };
        var stats = await client.GetFromJsonAsync<JsonElement>("stats", Ct);
        Assert.Equal((12L, 12L), (stats.GetProperty("total").GetInt64(), stats.GetProperty("succeeded").GetInt64()));
        Assert.InRange(stats.GetProperty("peak").GetInt32(), 1, 3);
    }

    [Theory]
    [InlineData("""{"provider": "anthropic"}""", "model: the Claude model to ask")]
    [InlineData("""{"provider": "anthropic", "model": "claude-test", "endpoint": "ftp://x"}""", "endpoint: must be an absolute http(s) URL")]
    [InlineData("""{"provider": "bedrock", "model": "claude-test"}""", "provider: 'bedrock' is not known; use 'anthropic', 'azure', 'openai' or 'simulated'")]
    public async Task AnthropicPool_WithoutWhatItNeeds_OrAnUnknownProvider_Is400_SayingWhy(string body, string detail)
    {
        var response = await Http.PutAsync("/v1/pools/claude-bad", new StringContent(body, Encoding.UTF8, "application/json"), Ct);

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Contains(detail, problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await Http.GetAsync("/v1/pools/claude-bad", Ct)).StatusCode);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
