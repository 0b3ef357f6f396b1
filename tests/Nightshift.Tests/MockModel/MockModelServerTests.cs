using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Nightshift.MockModel;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.MockModel;

/// <summary>
/// The mock model provider that later tests count calls with: its answers must be exact and its
/// counts must be exact, or every invariant asserted through it is worthless.
/// </summary>
public sealed class MockModelServerTests
{
    private const string Body = MockModelHttp.Body;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task Completion_IsDeterministic_AndCountedPerCustomId()
    {
        await using var server = await MockModelServer.StartAsync(new MockModelOptions(), Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        var first = await CompleteAsync(client, "a", Body);
        var second = await CompleteAsync(client, "a", Body);
        var other = await CompleteAsync(client, "b", """{"messages":[]}""");
        using var anonymous = await client.PostAsync("v1/chat/completions", new StringContent(Body), Ct);

        Assert.Equal("chat.completion", first.GetProperty("object").GetString());
        Assert.StartsWith("chatcmpl-", first.GetProperty("id").GetString());
        Assert.True(first.GetProperty("created").GetInt64() > 0);
        Assert.Equal("gpt-4o-mini", first.GetProperty("model").GetString());
        Assert.Equal("mock", other.GetProperty("model").GetString());
        var choice = first.GetProperty("choices").EnumerateArray().Single();
        Assert.Equal("assistant", choice.GetProperty("message").GetProperty("role").GetString());
        Assert.Equal("stop", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(MockModelServer.ExpectedContent(Body), MockModelHttp.Content(first));
        Assert.Equal(MockModelHttp.Content(first), MockModelHttp.Content(second));
        Assert.NotEqual(MockModelHttp.Content(first), MockModelHttp.Content(other));
        Assert.Matches("^mock-[0-9a-f]{16}$", MockModelHttp.Content(first));

        var usage = first.GetProperty("usage");
        Assert.Equal(MockModelHttp.BodyPromptTokens, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(8, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(MockModelHttp.BodyPromptTokens + 8, usage.GetProperty("total_tokens").GetInt32());
        Assert.Equal(HttpStatusCode.OK, anonymous.StatusCode);

        var stats = server.Stats;
        Assert.Equal(4, stats.Total);
        Assert.Equal(0, stats.Current);
        Assert.Equal(1, stats.Peak);
        Assert.Equal(new Dictionary<string, int> { ["a"] = 2, ["b"] = 1, ["(none)"] = 1 }, stats.Calls);
    }

    [Fact]
    public async Task PeakConcurrency_IsCountedExactly_UnderParallelLoad()
    {
        // The held requests wait on a fault delay rather than a short latency, so "all 40 in flight at
        // once" is observed before they are released, not hoped for from timing.
        var options = new MockModelOptions
        {
            Respond = request => request.CustomId.StartsWith("held-", StringComparison.Ordinal)
                ? new MockResponse(200, "{}") { Delay = TimeSpan.FromMinutes(5) }
                : null,
        };
        await using var server = await MockModelServer.StartAsync(options, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };
        using var release = CancellationTokenSource.CreateLinkedTokenSource(Ct);

        var held = Enumerable.Range(0, 40).Select(i => MockModelHttp.PostAsync(client, $"held-{i}", Body, release.Token)).ToList();
        await MockModelHttp.WaitUntilAsync(server, stats => stats.Current == 40, "all 40 held requests in flight");
        Assert.Equal(40, server.Stats.Peak);

        await release.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => Task.WhenAll(held));
        await MockModelHttp.WaitUntilAsync(server, stats => stats.Current == 0, "every aborted request's slot freed");

        for (var i = 0; i < 3; i++)
        {
            await CompleteAsync(client, $"free-{i}", Body);
        }

        var afterLoad = server.Stats;
        Assert.Equal(43, afterLoad.Total);
        Assert.Equal(40, afterLoad.Peak);
        Assert.Equal(43, afterLoad.Calls.Count);
        Assert.All(afterLoad.Calls.Values, count => Assert.Equal(1, count));

        using var reset = await client.PostAsync("stats/reset", null, Ct);
        Assert.Equal(HttpStatusCode.NoContent, reset.StatusCode);
        var cleared = server.Stats;
        Assert.Equal(0, cleared.Total);
        Assert.Equal(0, cleared.Peak);
        Assert.Empty(cleared.Calls);

        await CompleteAsync(client, "free-0", Body);
        await CompleteAsync(client, "free-0", Body);
        var afterReset = server.Stats;
        Assert.Equal(2, afterReset.Total);
        Assert.Equal(1, afterReset.Peak);
        Assert.Equal(2, afterReset.Calls["free-0"]);
    }

    [Fact]
    public async Task AzureShape_IsServed()
    {
        await using var server = await MockModelServer.StartAsync(new MockModelOptions(), Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };
        const string body = """{"messages":[{"role":"user","content":"hi"}]}""";

        using var response = await MockModelHttp.PostAsync(client, "openai/deployments/my-deployment/chat/completions?api-version=2024-10-21", "az", body, Ct);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var completion = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal("my-deployment", completion.GetProperty("model").GetString());
        Assert.Equal(MockModelServer.ExpectedContent(body), MockModelHttp.Content(completion));
        Assert.Equal(1, server.Stats.Calls["az"]);
    }

    [Fact]
    public async Task Respond_Hook_OverridesTheAnswer()
    {
        var seen = new List<MockRequest>();
        var options = new MockModelOptions();
        await using var server = await MockModelServer.StartAsync(options, Ct);
        options.Respond = request =>
        {
            lock (seen)
            {
                seen.Add(request);
            }

            return request.Attempt == 1
                ? new MockResponse(429, """{"error":{"type":"rate_limit_exceeded"}}""") { Headers = new Dictionary<string, string> { ["Retry-After"] = "2" } }
                : null;
        };
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        using var limited = await MockModelHttp.PostAsync(client, "r", Body, Ct);
        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.Equal(TimeSpan.FromSeconds(2), limited.Headers.RetryAfter?.Delta);
        Assert.Equal("""{"error":{"type":"rate_limit_exceeded"}}""", await limited.Content.ReadAsStringAsync(Ct));

        var retried = await CompleteAsync(client, "r", Body);
        Assert.Equal(MockModelServer.ExpectedContent(Body), MockModelHttp.Content(retried));

        Assert.Equal(
            [new MockRequest("r", "/v1/chat/completions", Body, 1), new MockRequest("r", "/v1/chat/completions", Body, 2)],
            seen);
        Assert.Equal(2, server.Stats.Calls["r"]);
    }

    [Fact]
    public async Task AbortedRequest_FreesItsSlot()
    {
        var options = new MockModelOptions { LatencyMin = TimeSpan.FromMinutes(5), LatencyMax = TimeSpan.FromMinutes(5) };
        await using var server = await MockModelServer.StartAsync(options, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(Ct);

        var call = MockModelHttp.PostAsync(client, "gone", Body, abort.Token);
        await MockModelHttp.WaitUntilAsync(server, stats => stats.Current == 1, "the request in flight");
        await abort.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => call);
        await MockModelHttp.WaitUntilAsync(server, stats => stats.Current == 0, "the aborted request's slot freed");
        var stats = server.Stats;
        Assert.Equal(1, stats.Total);
        Assert.Equal(1, stats.Peak);
        Assert.Equal(1, stats.Calls["gone"]);
    }

    [Fact]
    public async Task Executable_PrintsItsAddress_AndCountsCalls_InItsOwnProcess()
    {
        using var mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "5"], Ct);
        Assert.Equal("127.0.0.1", mock.BaseAddress.Host);
        Assert.NotEqual(0, mock.BaseAddress.Port);
        using var client = new HttpClient { BaseAddress = mock.BaseAddress };

        using var health = await client.GetAsync("health", Ct);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        var completion = await CompleteAsync(client, "child", Body);
        Assert.Equal(MockModelServer.ExpectedContent(Body), MockModelHttp.Content(completion));

        var stats = await client.GetFromJsonAsync<JsonElement>("stats", Ct);
        Assert.Equal(1, stats.GetProperty("total").GetInt64());
        Assert.Equal(0, stats.GetProperty("current").GetInt32());
        Assert.Equal(1, stats.GetProperty("peak").GetInt32());
        Assert.Equal(1, stats.GetProperty("calls").GetProperty("child").GetInt32());
        Assert.Single(stats.GetProperty("calls").EnumerateObject());

        mock.Kill();
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => client.GetAsync("health", Ct));
    }

    [Fact]
    public async Task Executable_RejectsBadArguments_WithExitTwo()
    {
        using var process = MockModelProcess.Start(["--latency-ms", "50", "10"]);

        Assert.Equal(2, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains("--latency-ms MAX", process.StandardError);
        Assert.Empty(process.StandardOutput);
    }

    [Fact]
    public async Task Executable_TakesTheRateLimitAndFaultOptions()
    {
        // A bucket of 2 that refills at 0.1 per second: the third request is refused unless the
        // machine stalls for 10 s between the calls.
        using var mock = await MockModelProcess.StartAsync(["--port", "0", "--rps", "0.1", "--burst-seconds", "20", "--fault-500", "1", "--seed", "7", "--completion-tokens", "3"], Ct);
        using var client = new HttpClient { BaseAddress = mock.BaseAddress };

        using var first = await MockModelHttp.PostAsync(client, "x", Body, Ct);
        using var second = await MockModelHttp.PostAsync(client, "x", Body, Ct);
        using var third = await MockModelHttp.PostAsync(client, "x", Body, Ct);

        Assert.Equal([HttpStatusCode.InternalServerError, HttpStatusCode.InternalServerError, HttpStatusCode.TooManyRequests], [first.StatusCode, second.StatusCode, third.StatusCode]);
        Assert.Equal("6", MockModelHttp.Header(first, "x-ratelimit-limit-requests"));
        Assert.Equal("1", MockModelHttp.Header(first, "x-ratelimit-remaining-requests"));
        Assert.Equal("0", MockModelHttp.Header(second, "x-ratelimit-remaining-requests"));
        Assert.Equal("0", MockModelHttp.Header(third, "x-ratelimit-remaining-requests"));
        var stats = await client.GetFromJsonAsync<JsonElement>("stats", Ct);
        Assert.Equal(2, stats.GetProperty("injected").GetProperty("500").GetInt64());
        Assert.Equal(1, stats.GetProperty("rate_limited").GetInt64());
        Assert.Equal(2L * (MockModelHttp.BodyPromptTokens + 3), stats.GetProperty("tokens_admitted").GetInt64());
    }

    [Theory]
    [InlineData("--fault-500 1.5", "--fault-500 needs a probability from 0 to 1.")]
    [InlineData("--rps 0", "--rps needs a number above 0.")]
    [InlineData("--tps -5", "--tps needs a number above 0.")]
    [InlineData("--hang-ms soon", "--hang-ms needs a whole number of milliseconds")]
    [InlineData("--fault-429 0.6 --fault-503 0.6", "must not exceed 1")]
    [InlineData("--rps 0.5 --burst-seconds 1", "must be at least 1 request")]
    public async Task Executable_RejectsBadRateAndFaultOptions_WithExitTwo(string arguments, string message)
    {
        using var process = MockModelProcess.Start(arguments.Split(' '));

        Assert.Equal(2, await process.WaitForExitAsync(TimeSpan.FromSeconds(30)));
        Assert.Contains(message, process.StandardError);
        Assert.Empty(process.StandardOutput);
    }

    private static Task<JsonElement> CompleteAsync(HttpClient client, string customId, string body) =>
        MockModelHttp.CompleteAsync(client, customId, body, Ct);

}
