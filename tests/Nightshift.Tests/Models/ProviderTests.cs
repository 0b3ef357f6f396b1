using System.Text.Json.Nodes;
using Nightshift.Batches;
using Nightshift.MockModel;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Storage;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Models;

/// <summary>
/// The real provider clients (the OpenAI client for an OpenAI-compatible endpoint, Azure.AI.OpenAI for
/// Azure) through the whole grain path, against the loopback mock speaking both URL shapes. In every
/// case the mock's own count of HTTP requests per item equals the attempts Nightshift recorded.
/// </summary>
public sealed class ProviderTests(ProviderFixture fixture) : IClassFixture<ProviderFixture>
{
    private static readonly BatchOptions FastRetries = new()
    {
        MaxAttempts = 4,
        MaxRateLimitedAttempts = 4,
        BaseDelay = TimeSpan.FromMilliseconds(5),
        MaxDelay = TimeSpan.FromMilliseconds(20),
    };

    private NightshiftCluster Cluster => fixture.Cluster;

    [Theory]
    [InlineData(OpenAiCompatibleProvider.ProviderName)]
    [InlineData(AzureOpenAiProvider.ProviderName)]
    public async Task Success_PassesTheBodyThrough_AndStoresTheResponseAndUsage_AsTheProviderSentThem(string provider)
    {
        var prefix = $"ok-{provider}";
        const string Answer = """{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"{\"greeting\":\"hi\"}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":100,"completion_tokens":10,"total_tokens":110,"prompt_tokens_details":{"cached_tokens":40}},"system_fingerprint":"fp_1"}""";

        // The body asks for a JSON object, so the answer is one (or it would fail validation).
        fixture.Respond = request => request.CustomId.StartsWith(prefix, StringComparison.Ordinal) ? new MockResponse(200, Answer) : null;
        var body = """{"model":"ignored","messages":[{"role":"user","content":"x"}],"temperature":0.2,"max_tokens":64,"seed":7,"response_format":{"type":"json_object"},"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"vendor_extra":{"a":[1,2]}}""";
        var lines = string.Concat(Enumerable.Range(0, 5).Select(i => $$"""{"custom_id":"{{prefix}}-{{i}}","method":"POST","url":"/v1/chat/completions","body":{{body}}}""" + "\n"));

        var status = await RunAsync(provider, prefix, lines, FastRetries, maxRunning: 4);

        Assert.Equal((BatchState.Completed, 5L, 0L), (status.State, status.Succeeded, status.Failed));
        Assert.Equal((500L, 50L, 200L), (status.InputTokens, status.OutputTokens, status.CachedTokens));
        var expected = JsonNode.Parse(body)!.AsObject();
        expected["model"] = fixture.Binding(provider).Model;
        var received = fixture.Arrivals.Where(a => a.Request.CustomId.StartsWith(prefix, StringComparison.Ordinal)).Select(a => a.Request).ToList();
        Assert.Equal(5, received.Count);
        Assert.All(received, request =>
        {
            Assert.Equal(ProviderFixture.PathOf(provider), request.Path);
            Assert.True(JsonNode.DeepEquals(expected, JsonNode.Parse(request.Body)), $"sent {request.Body}");
        });
        await foreach (var item in Cluster.Store.ReadResultsAsync(prefix, Ct))
        {
            Assert.Equal(Answer, item.Response);
        }

        await fixture.AssertEveryRequestIsARecordedAttemptAsync(prefix, prefix);
    }

    [Theory]
    [InlineData("Retry-After", "1")]
    [InlineData("retry-after-ms", "1000")]
    [InlineData("x-ratelimit-reset-requests", "1s")]
    public async Task RateLimited_RetriesNoSoonerThanTheProviderSays_AndCoolsThePoolDownForEveryItem(string header, string value)
    {
        var prefix = $"limited-{header}";
        var limited = 0;
        fixture.Respond = request =>
            request.CustomId.StartsWith(prefix, StringComparison.Ordinal) && Interlocked.Exchange(ref limited, 1) == 0
                ? new MockResponse(429, """{"error":{"message":"slow down","type":"rate_limit_exceeded"}}""") { Headers = new Dictionary<string, string> { [header] = value } }
                : null;
        var lines = Jsonl.Lines(24, prefix);

        var status = await RunAsync(OpenAiCompatibleProvider.ProviderName, prefix, lines, FastRetries, maxRunning: 4,
            pool => pool with { DefaultCooldown = TimeSpan.FromMilliseconds(20), SlowStart = TimeSpan.FromMilliseconds(100) });

        Assert.Equal((BatchState.Completed, 24L), (status.State, status.Succeeded));
        var arrivals = fixture.Arrivals.Where(a => a.Request.CustomId.StartsWith(prefix, StringComparison.Ordinal)).ToList();
        var first = arrivals.First(a => a.Request.Attempt == 1 && arrivals.Count(b => b.Request.CustomId == a.Request.CustomId) == 2);
        var retry = arrivals.Single(a => a.Request.CustomId == first.Request.CustomId && a.Request.Attempt == 2);
        Assert.True(retry.At - first.At >= TimeSpan.FromSeconds(1), $"the retry came {(retry.At - first.At).TotalMilliseconds} ms after the 429");

        // The whole pool waits, not just the item: once the pool has heard of the 429 (well within
        // 250 ms), no item's request arrives until the wait is over.
        var duringCooldown = arrivals.Where(a => a.At > first.At + TimeSpan.FromMilliseconds(250) && a.At < first.At + TimeSpan.FromMilliseconds(950)).ToList();
        Assert.Empty(duringCooldown);
        Assert.True((await Cluster.Grains.GetGrain<IPoolGrain>(prefix).GetSnapshot()).RateLimited >= 1);
        await fixture.AssertEveryRequestIsARecordedAttemptAsync(prefix, prefix);
    }

    [Theory]
    [InlineData(OpenAiCompatibleProvider.ProviderName)]
    [InlineData(AzureOpenAiProvider.ProviderName)]
    public async Task ServerError_ThenSuccess_IsRetriedOnce(string provider)
    {
        var prefix = $"flaky-{provider}";
        fixture.Respond = request => request.CustomId.StartsWith(prefix, StringComparison.Ordinal) && request.Attempt == 1
            ? new MockResponse(500, """{"error":{"message":"boom","type":"server_error"}}""")
            : null;

        var status = await RunAsync(provider, prefix, Jsonl.Lines(10, prefix), FastRetries, maxRunning: 4);

        Assert.Equal((BatchState.Completed, 10L, 0L), (status.State, status.Succeeded, status.Failed));
        Assert.All(fixture.Mock.Stats.Calls.Where(c => c.Key.StartsWith(prefix, StringComparison.Ordinal)), c => Assert.Equal(2, c.Value));
        await fixture.AssertEveryRequestIsARecordedAttemptAsync(prefix, prefix);
    }

    [Fact]
    public async Task Hang_IsCutByTheAttemptTimeout_WhichAbortsTheRequest_AndIsRetried()
    {
        const string Prefix = "hang";
        fixture.Respond = request => request.CustomId.StartsWith(Prefix, StringComparison.Ordinal) && request.Attempt == 1
            ? new MockResponse(200, "{}") { Delay = TimeSpan.FromMinutes(2) }
            : null;
        var options = FastRetries with { AttemptTimeout = TimeSpan.FromMilliseconds(500) };

        var started = DateTime.UtcNow;
        var status = await RunAsync(AzureOpenAiProvider.ProviderName, Prefix, Jsonl.Lines(6, Prefix), options, maxRunning: 6);

        Assert.Equal((BatchState.Completed, 6L), (status.State, status.Succeeded));
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(20), "the hung requests were not cut at 500 ms");
        Assert.All(fixture.Mock.Stats.Calls.Where(c => c.Key.StartsWith(Prefix, StringComparison.Ordinal)), c => Assert.Equal(2, c.Value));

        // The aborted requests ended on the server's side too: nothing is left hanging there.
        Assert.Equal(0, fixture.Mock.Stats.Current);
        await fixture.AssertEveryRequestIsARecordedAttemptAsync(Prefix, Prefix);
    }

    [Theory]
    [InlineData("malformed")]
    [InlineData("truncated")]
    [InlineData("reset")]
    public async Task BrokenAnswer_IsRetried(string fault)
    {
        var prefix = $"broken-{fault}";
        const string Completion = """{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"a long enough answer"},"finish_reason":"stop"}]}""";
        fixture.Respond = request => !request.CustomId.StartsWith(prefix, StringComparison.Ordinal) || request.Attempt > 1 ? null : fault switch
        {
            "malformed" => new MockResponse(200, """{"choices": [{"index": 0, "mess"""),
            "truncated" => new MockResponse(200, Completion) { ResetAfterBytes = 30 },
            _ => new MockResponse(200, Completion) { ResetAfterBytes = 0 },
        };

        var status = await RunAsync(OpenAiCompatibleProvider.ProviderName, prefix, Jsonl.Lines(6, prefix), FastRetries, maxRunning: 3);

        Assert.Equal((BatchState.Completed, 6L, 0L), (status.State, status.Succeeded, status.Failed));
        Assert.All(fixture.Mock.Stats.Calls.Where(c => c.Key.StartsWith(prefix, StringComparison.Ordinal)), c => Assert.Equal(2, c.Value));
        await fixture.AssertEveryRequestIsARecordedAttemptAsync(prefix, prefix);
    }

    [Theory]
    [InlineData(400, """{"error":{"message":"Invalid value for 'temperature'","type":"invalid_request_error"}}""", "Invalid value for 'temperature'")]
    [InlineData(403, """{"error":{"message":"This region is not allowed","type":"permission_error"}}""", "This region is not allowed")]
    [InlineData(422, """{"error":{"message":"Unprocessable tools","type":"invalid_request_error"}}""", "Unprocessable tools")]
    [InlineData(400, """{"error":{"message":"The response was filtered due to the prompt triggering content management policy","code":"content_filter"}}""", "content management policy")]
    [InlineData(200, """{"id":"c","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":null},"finish_reason":"content_filter"}],"usage":{"prompt_tokens":9,"completion_tokens":0}}""", "content filter")]
    public async Task PermanentError_FailsTheItemOnItsFirstAttempt_WithTheProvidersMessage(int statusCode, string answer, string message)
    {
        var prefix = $"permanent-{statusCode}-{message.Length}";
        fixture.Respond = request => request.CustomId.StartsWith(prefix, StringComparison.Ordinal) ? new MockResponse(statusCode, answer) : null;

        var status = await RunAsync(OpenAiCompatibleProvider.ProviderName, prefix, Jsonl.Lines(5, prefix), FastRetries, maxRunning: 2);

        Assert.Equal((BatchState.Completed, 0L, 5L), (status.State, status.Succeeded, status.Failed));
        await foreach (var item in Cluster.Store.ReadResultsAsync(prefix, Ct))
        {
            Assert.Equal(ItemState.Failed, item.State);
            Assert.Contains(message, item.Error, StringComparison.Ordinal);
            Assert.Equal(answer, item.Response);
        }

        Assert.All(fixture.Mock.Stats.Calls.Where(c => c.Key.StartsWith(prefix, StringComparison.Ordinal)), c => Assert.Equal(1, c.Value));
        Assert.Null((await Cluster.Grains.GetGrain<IPoolGrain>(prefix).GetSnapshot()).PausedReason);
        await fixture.AssertEveryRequestIsARecordedAttemptAsync(prefix, prefix);
    }

    [Theory]
    [InlineData(OpenAiCompatibleProvider.ProviderName, 401, "Incorrect API key provided")]
    [InlineData(AzureOpenAiProvider.ProviderName, 404, "The API deployment for this resource does not exist")]
    public async Task RefusedPool_PausesThePool_SayingWhy_InsteadOfBurningThroughTheItems(string provider, int statusCode, string message)
    {
        var prefix = $"refused-{statusCode}";
        var refusing = true;
        fixture.Respond = request => Volatile.Read(ref refusing) && request.CustomId.StartsWith(prefix, StringComparison.Ordinal)
            ? new MockResponse(statusCode, $$$"""{"error":{"message":"{{{message}}}","code":"{{{statusCode}}}"}}""")
            : null;
        var pool = Cluster.Grains.GetGrain<IPoolGrain>(prefix);
        await pool.Configure(new PoolConfig { MaxRunning = 2, Model = fixture.Binding(provider) });
        var submitted = await Cluster.Submitter.SubmitAsync(prefix, prefix, FastRetries, Jsonl.Stream(Jsonl.Lines(30, prefix)), Ct);
        Assert.True(submitted.Accepted, submitted.Reason);

        var reason = await WaitForPauseAsync(pool);
        Assert.Contains($"HTTP {statusCode}", reason, StringComparison.Ordinal);
        Assert.Contains(message, reason, StringComparison.Ordinal);

        // Only the calls that were already running met the refusal; the rest wait, none failed.
        await Task.Delay(TimeSpan.FromMilliseconds(500), Ct);
        var calls = Calls(prefix);
        Assert.InRange(calls, 1, 2);
        var batch = Cluster.Grains.GetGrain<IBatchGrain>(prefix);
        var waiting = await batch.GetStatus();
        Assert.Equal((BatchState.Running, 0L, 0L), (waiting.State, waiting.Succeeded, waiting.Failed));
        await Task.Delay(TimeSpan.FromMilliseconds(300), Ct);
        Assert.Equal(calls, Calls(prefix));

        Volatile.Write(ref refusing, false);
        await pool.Resume();
        var status = await batch.WaitUntilFinishedAsync(TimeSpan.FromSeconds(30), Cluster.Store);
        Assert.Equal((BatchState.Completed, 30L, 0L), (status.State, status.Succeeded, status.Failed));
        Assert.Null((await pool.GetSnapshot()).PausedReason);
        await fixture.AssertEveryRequestIsARecordedAttemptAsync(prefix, prefix);
    }

    [Fact]
    public async Task RateLimited_WhileTheHeadersShowRoom_ShrinksTheCap_ButHoldsNoOtherItem()
    {
        const string Prefix = "roomy";
        var limited = 0;
        fixture.Respond = request =>
            request.CustomId.StartsWith(Prefix, StringComparison.Ordinal) && Interlocked.Exchange(ref limited, 1) == 0
                ? new MockResponse(429, """{"error":{"message":"server busy","type":"rate_limit_exceeded"}}""")
                {
                    Headers = new Dictionary<string, string> { ["Retry-After"] = "1", ["x-ratelimit-remaining-requests"] = "500", ["x-ratelimit-limit-requests"] = "600000" },
                    Delay = TimeSpan.FromMilliseconds(100),
                }
                : null;

        // Enough items that the others outlast the window below however fast the calls go (200 × 10 ms / 4 slots = 500 ms at the
        // least); with 60, a fast run had finished them all within 250 ms of the 429.
        var status = await RunAsync(OpenAiCompatibleProvider.ProviderName, Prefix, Jsonl.Lines(200, Prefix), FastRetries, maxRunning: 4);

        Assert.Equal((BatchState.Completed, 200L), (status.State, status.Succeeded));
        var arrivals = fixture.Arrivals.Where(a => a.Request.CustomId.StartsWith(Prefix, StringComparison.Ordinal)).ToList();
        var refused = arrivals.First(a => arrivals.Count(b => b.Request.CustomId == a.Request.CustomId) == 2);

        // An overloaded server, not a spent quota: the other items go on while the refused one waits.
        var meanwhile = arrivals.Count(a => a.At > refused.At + TimeSpan.FromMilliseconds(250) && a.At < refused.At + TimeSpan.FromMilliseconds(950));
        Assert.True(meanwhile > 0, "no item was called while the 429's item waited");
        var snapshot = await Cluster.Grains.GetGrain<IPoolGrain>(Prefix).GetSnapshot();
        Assert.Equal(1, snapshot.RateLimited);
        Assert.Null(snapshot.RateControl!.HeldUntil);
        await fixture.AssertEveryRequestIsARecordedAttemptAsync(Prefix, Prefix);
    }

    [Fact]
    public async Task AdvertisedLimits_AreLearnedFromSuccessfulAnswers_ALittleBelowThem()
    {
        const string Prefix = "learning";
        const string Answer = """{"id":"chatcmpl-x","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":30,"completion_tokens":5,"total_tokens":35}}""";
        var headers = new Dictionary<string, string>
        {
            ["x-ratelimit-limit-requests"] = "6000", ["x-ratelimit-remaining-requests"] = "5990", ["x-ratelimit-reset-requests"] = "10ms",
            ["x-ratelimit-limit-tokens"] = "1200000", ["x-ratelimit-remaining-tokens"] = "1199000", ["x-ratelimit-reset-tokens"] = "1ms",
        };
        // Calls that take a while: the first answers teach the pool its limits while most items wait (the
        // slots granted before, hot ones, come back to the pool once it paces itself).
        fixture.Respond = request => request.CustomId.StartsWith(Prefix, StringComparison.Ordinal)
            ? new MockResponse(200, Answer) { Headers = headers, Delay = TimeSpan.FromMilliseconds(100) }
            : null;

        var status = await RunAsync(OpenAiCompatibleProvider.ProviderName, Prefix, Jsonl.Lines(40, Prefix), FastRetries, maxRunning: 4,
            pool => pool with { DefaultMaxTokens = 100 });

        Assert.Equal((BatchState.Completed, 40L), (status.State, status.Succeeded));
        var rate = (await Cluster.Grains.GetGrain<IPoolGrain>(Prefix).GetSnapshot()).RateControl!;
        Assert.Equal((5_700L, LimitSource.Learned, 6_000L), (rate.Requests!.PerMinute, rate.Requests.Source, rate.Requests.ProviderLimit));
        Assert.Equal((1_140_000L, LimitSource.Learned, 1_199_000L), (rate.Tokens!.PerMinute, rate.Tokens.Source, rate.Tokens.ProviderRemaining));

        // Once a token budget is in force, each call estimates itself before it starts (its prompt
        // plus the default 100 completion tokens), and the pool's mean moves from 100 towards that.
        Assert.InRange(rate.TokensPerCall, 100.5, 140);
    }

    private async Task<BatchStatus> RunAsync(string provider, string batchId, string lines, BatchOptions options, int maxRunning, Func<PoolConfig, PoolConfig>? configure = null)
    {
        var config = new PoolConfig { MaxRunning = maxRunning, Model = fixture.Binding(provider) };
        await Cluster.Grains.GetGrain<IPoolGrain>(batchId).Configure(configure is null ? config : configure(config));
        var submitted = await Cluster.Submitter.SubmitAsync(batchId, batchId, options, Jsonl.Stream(lines), Ct);
        Assert.True(submitted.Accepted, submitted.Reason);
        return await Cluster.Grains.GetGrain<IBatchGrain>(batchId).WaitUntilFinishedAsync(TimeSpan.FromSeconds(60), Cluster.Store);
    }

    private int Calls(string prefix) => fixture.Mock.Stats.Calls.Where(c => c.Key.StartsWith(prefix, StringComparison.Ordinal)).Sum(c => c.Value);

    private static async Task<string> WaitForPauseAsync(IPoolGrain pool) =>
        (await Eventually.MatchesAsync(pool.GetSnapshot, snapshot => snapshot.PausedReason is not null,
            snapshot => $"the pool did not pause: {snapshot}", TimeSpan.FromSeconds(20))).PausedReason!;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
