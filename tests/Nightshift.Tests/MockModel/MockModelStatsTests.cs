using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Nightshift.MockModel;

namespace Nightshift.Tests.MockModel;

/// <summary>
/// The counts the rate benchmark reads from the mock: throughput from the success times, the share of
/// 429s, and the concurrency weighted by time. The clock is fake, so every figure is exact.
/// </summary>
public sealed class MockModelStatsTests
{
    private static readonly JsonSerializerOptions StatsJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task AverageInFlight_IsWeightedByTime_BetweenTheFirstArrivalAndTheLastDeparture()
    {
        var clock = new TimerCountingClock();
        var second = TimeSpan.FromSeconds(1);
        await using var server = await MockModelServer.StartAsync(new MockModelOptions { LatencyMin = second, LatencyMax = second, TimeProvider = clock }, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        // a runs over [0, 1 s], b over [0.5 s, 1.5 s]: 2 request-seconds in 1.5 s.
        var a = MockModelHttp.PostAsync(client, "a", MockModelHttp.Body, Ct);
        await clock.WaitForTimersAsync(1);
        clock.Advance(TimeSpan.FromMilliseconds(500));
        var b = MockModelHttp.PostAsync(client, "b", MockModelHttp.Body, Ct);
        await clock.WaitForTimersAsync(2);
        clock.Advance(TimeSpan.FromMilliseconds(500));
        (await a).Dispose();
        await MockModelHttp.WaitUntilAsync(server, stats => stats.Current == 1, "a finished");
        clock.Advance(TimeSpan.FromMilliseconds(500));
        (await b).Dispose();
        await MockModelHttp.WaitUntilAsync(server, stats => stats.Current == 0, "b finished");

        var stats = server.Stats;
        Assert.Equal(TimerCountingClock.StartUnixMs, stats.FirstArrival);
        Assert.Equal(TimerCountingClock.StartUnixMs + 1500, stats.LastDeparture);
        Assert.Equal(2 / 1.5, stats.AverageInFlight, 9);
        Assert.Equal(2, stats.Peak);
        Assert.Equal(2, stats.Succeeded);
        Assert.Equal(2L * (MockModelHttp.BodyPromptTokens + 8), stats.TokensSucceeded);
        Assert.Equal(stats.TokensSucceeded, stats.TokensAdmitted);
        var successes = (await client.GetFromJsonAsync<long[]>("stats/successes", Ct))!;
        Assert.Equal([TimerCountingClock.StartUnixMs + 1000, TimerCountingClock.StartUnixMs + 1500], successes);
    }

    [Fact]
    public async Task StatsJson_CountsEveryOutcome_AndResetClearsThem()
    {
        var clock = new TimerCountingClock();
        var options = new MockModelOptions { RequestsPerSecond = 3, TimeProvider = clock };
        await using var server = await MockModelServer.StartAsync(options, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };
        options.Respond = request => request.CustomId == "broken" ? new MockResponse(500, "{}") : null;

        await MockModelHttp.CompleteAsync(client, "ok-1", MockModelHttp.Body, Ct);
        clock.Advance(TimeSpan.FromMilliseconds(250));
        await MockModelHttp.CompleteAsync(client, "ok-2", MockModelHttp.Body, Ct);
        (await MockModelHttp.PostAsync(client, "broken", MockModelHttp.Body, Ct)).Dispose();
        clock.Advance(TimeSpan.FromMilliseconds(50));
        using var refused = await MockModelHttp.PostAsync(client, "refused", MockModelHttp.Body, Ct);
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        await MockModelHttp.WaitUntilAsync(server, stats => stats.Current == 0, "every request finished");

        var stats = await client.GetFromJsonAsync<JsonElement>("stats", Ct);
        Assert.Equal(4, stats.GetProperty("total").GetInt64());
        Assert.Equal(2, stats.GetProperty("succeeded").GetInt64());
        Assert.Equal(1, stats.GetProperty("rate_limited").GetInt64());
        Assert.Equal(
            ["429:0", "500:0", "503:0", "529:0", "hang:0", "truncate:0"],
            stats.GetProperty("injected").EnumerateObject().Select(fault => $"{fault.Name}:{fault.Value.GetInt64()}").Order(StringComparer.Ordinal));
        Assert.Equal(
            ["200:2", "429:1", "500:1"],
            stats.GetProperty("status_counts").EnumerateObject().Select(status => $"{status.Name}:{status.Value.GetInt64()}").Order(StringComparer.Ordinal));
        Assert.Equal(3L * (MockModelHttp.BodyPromptTokens + 8), stats.GetProperty("tokens_admitted").GetInt64());
        Assert.Equal(2L * (MockModelHttp.BodyPromptTokens + 8), stats.GetProperty("tokens_succeeded").GetInt64());
        Assert.Equal(TimerCountingClock.StartUnixMs, stats.GetProperty("first_arrival").GetInt64());
        Assert.Equal(TimerCountingClock.StartUnixMs + 300, stats.GetProperty("last_departure").GetInt64());
        Assert.Equal(0, stats.GetProperty("average_in_flight").GetDouble());
        var successes = (await client.GetFromJsonAsync<long[]>("stats/successes", Ct))!;
        Assert.Equal([TimerCountingClock.StartUnixMs, TimerCountingClock.StartUnixMs + 250], successes);

        using var reset = await client.PostAsync("stats/reset", null, Ct);
        Assert.Equal(HttpStatusCode.NoContent, reset.StatusCode);

        var cleared = await client.GetFromJsonAsync<MockModelStats>("stats", StatsJson, Ct);
        Assert.NotNull(cleared);
        Assert.Equal(0, cleared.Total);
        Assert.Equal(0, cleared.Succeeded);
        Assert.Equal(0, cleared.RateLimited);
        Assert.All(cleared.Injected.Values, count => Assert.Equal(0, count));
        Assert.Empty(cleared.StatusCounts);
        Assert.Equal(0, cleared.TokensAdmitted);
        Assert.Equal(0, cleared.TokensSucceeded);
        Assert.Null(cleared.FirstArrival);
        Assert.Null(cleared.LastDeparture);
        Assert.Equal(0, cleared.AverageInFlight);
        Assert.Empty((await client.GetFromJsonAsync<long[]>("stats/successes", Ct))!);
    }
}
