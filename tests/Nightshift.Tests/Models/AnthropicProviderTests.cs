using System.Net.Http.Json;
using System.Text.Json;
using Nightshift.Batches;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Models;

/// <summary>
/// The Anthropic provider against the mock's Messages API, run as its own process: it checks every request's
/// shape (key, version, max_tokens, top-level system, alternating turns) and counts what it received.
/// </summary>
public sealed class AnthropicProviderTests : IDisposable
{
    private const string KeyVariable = "NIGHTSHIFT_TEST_ANTHROPIC_KEY";
    private const string Key = "sk-ant-test-secret";

    private static readonly BatchOptions FastRetries = new()
    {
        MaxAttempts = 4,
        MaxRateLimitedAttempts = 40,
        BaseDelay = TimeSpan.FromMilliseconds(5),
        MaxDelay = TimeSpan.FromMilliseconds(20),
    };

    private readonly RunWorkspace _run = new();

    [Fact]
    public async Task Run_WithProviderAnthropic_WritesAChatCompletionForEveryLine_WithinTheCap()
    {
        using var mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "20", "40"], Ct);
        var lines = Jsonl.Lines(36, "claude").Split('\n', StringSplitOptions.RemoveEmptyEntries).Concat(
        [
            """{"custom_id":"claude-system","method":"POST","url":"/v1/chat/completions","body":{"model":"x","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],"stop":"END","temperature":0.2}}""",
            """{"custom_id":"claude-image","method":"POST","url":"/v1/chat/completions","body":{"model":"x","messages":[{"role":"user","content":[{"type":"text","text":"what is it?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}}]}]}}""",
            """{"custom_id":"claude-turns","method":"POST","url":"/v1/chat/completions","body":{"model":"x","messages":[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"assistant","content":"c"},{"role":"user","content":"d"}]}}""",
            """{"custom_id":"claude-short","method":"POST","url":"/v1/chat/completions","body":{"model":"x","messages":[{"role":"user","content":"e"}],"max_tokens":3}}""",
        ]).ToList();
        await File.WriteAllLinesAsync(_run.Input, lines, Ct);

        using var run = _run.Start(new Dictionary<string, string> { [KeyVariable] = Key },
            "--provider", "anthropic", "--endpoint", mock.BaseAddress.ToString(), "--model", "claude-test", "--api-key-env", KeyVariable, "--max-running", "4");
        Assert.True(await run.WaitForExitAsync(TimeSpan.FromMinutes(2)) == 0, run.Output + mock.Output);

        var results = (await File.ReadAllLinesAsync(_run.Output, Ct)).Select(line => JsonDocument.Parse(line).RootElement).ToList();
        Assert.Equal(40, results.Count);
        Assert.All(results, result =>
        {
            var response = result.GetProperty("response");
            Assert.Equal(200, response.GetProperty("status_code").GetInt32());
            var body = response.GetProperty("body");
            Assert.Equal("chat.completion", body.GetProperty("object").GetString());
            Assert.StartsWith("msg_", body.GetProperty("id").GetString(), StringComparison.Ordinal);
            Assert.Equal("claude-test", body.GetProperty("model").GetString());
            var choice = body.GetProperty("choices")[0];
            Assert.StartsWith("mock-", choice.GetProperty("message").GetProperty("content").GetString(), StringComparison.Ordinal);
            var expectedFinish = result.GetProperty("custom_id").GetString() == "claude-short" ? "length" : "stop";
            Assert.Equal(expectedFinish, choice.GetProperty("finish_reason").GetString());
            Assert.True(body.GetProperty("usage").GetProperty("prompt_tokens").GetInt64() > 0);
        });

        using var client = new HttpClient { BaseAddress = mock.BaseAddress };
        var stats = await client.GetFromJsonAsync<JsonElement>("stats", Ct);
        Assert.Equal(40, stats.GetProperty("total").GetInt64());
        Assert.Equal(40, stats.GetProperty("succeeded").GetInt64());
        Assert.InRange(stats.GetProperty("peak").GetInt32(), 1, 4);
        Assert.All(stats.GetProperty("calls").EnumerateObject(), calls => Assert.Equal(1, calls.Value.GetInt32()));
        Assert.DoesNotContain(Key, run.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RateLimitedAndOverloaded_AreRetriedByNightshiftAlone_AndThePoolLearnsTheAdvertisedLimit()
    {
        // 20 requests per second (1200 a minute, advertised in anthropic-ratelimit-requests-*), and one
        // admitted request in five answered 429 or 529 with retry-after: 0.
        using var mock = await MockModelProcess.StartAsync(
            ["--port", "0", "--latency-ms", "5", "10", "--rps", "20", "--fault-429", "0.1", "--fault-529", "0.1", "--retry-after-s", "0", "--seed", "11"], Ct);
        Environment.SetEnvironmentVariable(KeyVariable, Key);
        await using var cluster = await NightshiftCluster.StartAsync();
        const string Batch = "claude-limits";
        var pool = cluster.Grains.GetGrain<IPoolGrain>(Batch);
        await pool.Configure(new PoolConfig
        {
            MaxRunning = 6,
            DefaultCooldown = TimeSpan.FromMilliseconds(20),
            SlowStart = TimeSpan.FromMilliseconds(200),
            Model = new ModelBinding { Provider = AnthropicProvider.ProviderName, Endpoint = mock.BaseAddress.ToString(), Model = "claude-test", ApiKeyEnvironmentVariable = KeyVariable },
        });

        var submitted = await cluster.Submitter.SubmitAsync(Batch, Batch, FastRetries, Jsonl.Stream(Jsonl.Lines(60, Batch)), Ct);
        Assert.True(submitted.Accepted, submitted.Reason);
        var status = await cluster.Grains.GetGrain<IBatchGrain>(Batch).WaitUntilFinishedAsync(TimeSpan.FromSeconds(90), cluster.Store);

        Assert.Equal((BatchState.Completed, 60L, 0L), (status.State, status.Succeeded, status.Failed));
        using var client = new HttpClient { BaseAddress = mock.BaseAddress };
        var stats = await client.GetFromJsonAsync<JsonElement>("stats", Ct);
        var injected = stats.GetProperty("injected");
        Assert.True(injected.GetProperty("429").GetInt64() > 0, stats.ToString());
        Assert.True(injected.GetProperty("529").GetInt64() > 0, stats.ToString());

        // Every request the mock saw is an attempt Nightshift recorded: the SDK retried nothing.
        var recorded = await ProviderFixture.RecordedAttemptsAsync(cluster.StorePath, Batch);
        var counted = stats.GetProperty("calls").EnumerateObject().ToDictionary(calls => calls.Name, calls => calls.Value.GetInt32());
        Assert.Equal(counted.Values.Sum(), recorded.Values.Sum());
        Assert.All(recorded, attempts => Assert.Equal(counted.GetValueOrDefault(attempts.Key), attempts.Value));
        Assert.True(recorded.Values.Sum() > 60, "some items were retried");

        var snapshot = await pool.GetSnapshot();
        Assert.True(snapshot.RateLimited > 0, "the 429s and 529s reached the pool");
        var requests = Assert.IsType<BudgetSnapshot>(snapshot.RateControl?.Requests);
        Assert.Equal((LimitSource.Learned, 1200L), (requests.Source, requests.ProviderLimit));
        Assert.Equal(1140, requests.PerMinute);
    }

    [Theory]
    [InlineData(new[] { "--provider", "bedrock", "--endpoint", "http://127.0.0.1:9", "--model", "m" }, "--provider: 'bedrock' is not known; use 'anthropic', 'azure', 'openai' or 'simulated'.")]
    [InlineData(new[] { "--provider", "anthropic" }, "--provider anthropic: model: the Claude model to ask")]
    [InlineData(new[] { "--provider", "anthropic", "--azure-endpoint", "https://x.openai.azure.com", "--deployment", "d" }, "--azure-endpoint is the 'azure' provider's")]
    public async Task Run_RefusesAnUnknownProvider_OrOneMissingWhatItNeeds_BeforeStarting(string[] options, string error)
    {
        await File.WriteAllTextAsync(_run.Input, Jsonl.Lines(3, "refused"), Ct);

        using var run = _run.Start(new Dictionary<string, string>(), options);

        Assert.NotEqual(0, await run.WaitForExitAsync(TimeSpan.FromMinutes(1)));
        Assert.Contains(error, run.Output, StringComparison.Ordinal);
        Assert.False(File.Exists(_run.StorePath), "nothing was started");
    }

    public void Dispose() => _run.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
