using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Nightshift.MockModel;

namespace Nightshift.Tests.MockModel;

/// <summary>
/// The mock's injected faults: each must look as a real provider's does on the wire, come only after
/// the buckets admitted the request and after its latency, and a seed must replay the same mix.
/// </summary>
public sealed class MockModelFaultTests
{
    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Theory]
    [InlineData("429", HttpStatusCode.TooManyRequests, "rate_limit_error")]
    [InlineData("500", HttpStatusCode.InternalServerError, "server_error")]
    [InlineData("503", HttpStatusCode.ServiceUnavailable, "server_error")]
    public async Task InjectedError_ComesAfterTheLatency_WithTheRealRateLimitHeaders(string fault, HttpStatusCode status, string type)
    {
        var clock = new TimerCountingClock();
        var options = new MockModelOptions
        {
            RequestsPerSecond = 100,
            LatencyMin = TimeSpan.FromMilliseconds(100),
            LatencyMax = TimeSpan.FromMilliseconds(100),
            Fault429 = fault == "429" ? 1 : 0,
            Fault500 = fault == "500" ? 1 : 0,
            Fault503 = fault == "503" ? 1 : 0,
            RetryAfterSeconds = 2,
            TimeProvider = clock,
        };
        await using var server = await MockModelServer.StartAsync(options, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        var call = MockModelHttp.PostAsync(client, "faulty", MockModelHttp.Body, Ct);
        await clock.WaitForTimersAsync(1);
        Assert.False(call.IsCompleted);
        clock.Advance(TimeSpan.FromMilliseconds(100));
        using var response = await call;

        Assert.Equal(status, response.StatusCode);
        Assert.Equal("99", MockModelHttp.Header(response, "x-ratelimit-remaining-requests"));
        Assert.Equal(fault == "429" ? TimeSpan.FromSeconds(2) : null, response.Headers.RetryAfter?.Delta);
        var error = (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("error");
        Assert.Equal(type, error.GetProperty("type").GetString());
        var stats = server.Stats;
        Assert.Equal(1, stats.Injected[fault]);
        Assert.Equal(0, stats.RateLimited);
        Assert.Equal(0, stats.Succeeded);
        Assert.Equal(new Dictionary<int, long> { [(int)status] = 1 }, stats.StatusCounts);
    }

    [Fact]
    public async Task InjectedTruncation_ResetsTheConnectionBeforeTheBodyEnds()
    {
        await using var server = await MockModelServer.StartAsync(new MockModelOptions { FaultTruncate = 1 }, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        // The mock sends the 200 and half the body, then resets; the reset may overtake those bytes on
        // the way, and the client then sees no answer at all. Either way it never gets a whole body.
        var failure = await Record.ExceptionAsync(async () =>
        {
            using var response = await MockModelHttp.PostAsync(client, "cut", MockModelHttp.Body, Ct);
            await response.Content.ReadAsStringAsync(Ct);
        });

        Assert.True(failure is HttpRequestException or IOException, $"expected a transport failure, not {failure?.ToString() ?? "a whole answer"}");
        await MockModelHttp.WaitUntilAsync(server, stats => stats.Current == 0, "the truncated request finished");
        var stats = server.Stats;
        Assert.Equal(1, stats.Injected["truncate"]);
        Assert.Equal(0, stats.Succeeded);
        Assert.Equal(0, stats.TokensSucceeded);
        Assert.Equal(new Dictionary<int, long> { [200] = 1 }, stats.StatusCounts);
    }

    [Fact]
    public async Task InjectedHang_HoldsTheRequestForHangMs_ThenAnswersNormally()
    {
        var clock = new TimerCountingClock();
        await using var server = await MockModelServer.StartAsync(new MockModelOptions { FaultHang = 1, HangMs = 3000, TimeProvider = clock }, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        var call = MockModelHttp.PostAsync(client, "hung", MockModelHttp.Body, Ct);
        await clock.WaitForTimersAsync(1);
        clock.Advance(TimeSpan.FromMilliseconds(2999));
        Assert.False(call.IsCompleted);
        clock.Advance(TimeSpan.FromMilliseconds(1));
        using var response = await call;

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(MockModelServer.ExpectedContent(MockModelHttp.Body), MockModelHttp.Content(await response.Content.ReadFromJsonAsync<JsonElement>(Ct)));
        await MockModelHttp.WaitUntilAsync(server, stats => stats.Current == 0, "the hung request finished");
        var stats = server.Stats;
        Assert.Equal(1, stats.Injected["hang"]);
        Assert.Equal(1, stats.Succeeded);
    }

    [Fact]
    public async Task OnlyAdmittedRequests_GetFaults()
    {
        var clock = new TimerCountingClock();
        await using var server = await MockModelServer.StartAsync(new MockModelOptions { RequestsPerSecond = 1, Fault500 = 1, TimeProvider = clock }, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        using var admitted = await MockModelHttp.PostAsync(client, "first", MockModelHttp.Body, Ct);
        using var refused = await MockModelHttp.PostAsync(client, "second", MockModelHttp.Body, Ct);

        Assert.Equal(HttpStatusCode.InternalServerError, admitted.StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal(1, server.Stats.Injected["500"]);
        Assert.Equal(1, server.Stats.RateLimited);
    }

    [Fact]
    public async Task SameSeed_ReplaysTheSameMixOfFaults()
    {
        var first = await OutcomesAsync(seed: 42);
        var again = await OutcomesAsync(seed: 42);
        var other = await OutcomesAsync(seed: 43);

        Assert.Equal(first, again);
        Assert.NotEqual(first, other);

        // Every kind turns up in 40 draws of five faults at 15 % each and 25 % of none.
        Assert.Equal(["200", "429", "500", "503", "hang", "truncate"], first.Distinct().Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task RespondHook_WinsOverInjectedFaults()
    {
        var options = new MockModelOptions
        {
            Fault500 = 1,
            Respond = request => request.CustomId == "hooked" ? new MockResponse(202, "{}") : null,
        };
        await using var server = await MockModelServer.StartAsync(options, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        using var hooked = await MockModelHttp.PostAsync(client, "hooked", MockModelHttp.Body, Ct);
        using var plain = await MockModelHttp.PostAsync(client, "plain", MockModelHttp.Body, Ct);

        Assert.Equal(HttpStatusCode.Accepted, hooked.StatusCode);
        Assert.Equal(HttpStatusCode.InternalServerError, plain.StatusCode);
        Assert.Equal(1, server.Stats.Injected["500"]);
    }

    /// <summary>What 40 sequential requests get from a mock seeded with <paramref name="seed"/>, one word each.</summary>
    private static async Task<List<string>> OutcomesAsync(int seed)
    {
        var options = new MockModelOptions { Fault429 = 0.15, Fault500 = 0.15, Fault503 = 0.15, FaultTruncate = 0.15, FaultHang = 0.15, HangMs = 1, Seed = seed };
        await using var server = await MockModelServer.StartAsync(options, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };
        var outcomes = new List<string>();
        for (var i = 0; i < 40; i++)
        {
            var injectedBefore = server.Stats.Injected["hang"];
            try
            {
                using var response = await MockModelHttp.PostAsync(client, $"s-{i}", MockModelHttp.Body, Ct);
                outcomes.Add(server.Stats.Injected["hang"] > injectedBefore ? "hang" : ((int)response.StatusCode).ToString(CultureInfo.InvariantCulture));
            }
            catch (HttpRequestException)
            {
                outcomes.Add("truncate");
            }
        }

        return outcomes;
    }
}
