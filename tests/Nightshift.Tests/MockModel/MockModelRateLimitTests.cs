using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.ML.Tokenizers;
using Nightshift.MockModel;

namespace Nightshift.Tests.MockModel;

/// <summary>
/// The mock's rate limits, which the rate control is benchmarked against: its buckets must refuse and
/// report exactly as an OpenAI-style provider does, or the benchmark measures the mock, not Nightshift.
/// The clock is fake, so every level and every wait is exact.
/// </summary>
public sealed class MockModelRateLimitTests
{
    private const int CompletionTokens = 8;
    private const int BodyTokens = MockModelHttp.BodyPromptTokens + CompletionTokens;

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task RequestBucket_RefusesAfterTheBurst_WithRemainingZeroAndTheWaitUntilItAdmits()
    {
        var clock = new TimerCountingClock();
        await using var server = await MockModelServer.StartAsync(new MockModelOptions { RequestsPerSecond = 5, TimeProvider = clock }, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        for (var i = 1; i <= 5; i++)
        {
            using var admitted = await MockModelHttp.PostAsync(client, $"a-{i}", MockModelHttp.Body, Ct);
            Assert.Equal(HttpStatusCode.OK, admitted.StatusCode);
            Assert.Equal("300", MockModelHttp.Header(admitted, "x-ratelimit-limit-requests"));
            Assert.Equal($"{5 - i}", MockModelHttp.Header(admitted, "x-ratelimit-remaining-requests"));
            Assert.Equal(i == 5 ? "1s" : $"{i * 200}ms", MockModelHttp.Header(admitted, "x-ratelimit-reset-requests"));
        }

        using var refused = await MockModelHttp.PostAsync(client, "refused", MockModelHttp.Body, Ct);
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("0", MockModelHttp.Header(refused, "x-ratelimit-remaining-requests"));
        Assert.Equal("1s", MockModelHttp.Header(refused, "x-ratelimit-reset-requests"));
        Assert.Equal("200", MockModelHttp.Header(refused, "retry-after-ms"));
        Assert.Equal(TimeSpan.FromSeconds(1), refused.Headers.RetryAfter?.Delta);
        var error = (await refused.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("error");
        Assert.Equal("rate_limit_error", error.GetProperty("type").GetString());
        Assert.Equal("rate_limit_exceeded", error.GetProperty("code").GetString());
        Assert.StartsWith("Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 300", error.GetProperty("message").GetString());

        clock.Advance(TimeSpan.FromMilliseconds(150));
        using var early = await MockModelHttp.PostAsync(client, "early", MockModelHttp.Body, Ct);
        Assert.Equal(HttpStatusCode.TooManyRequests, early.StatusCode);
        Assert.Equal("50", MockModelHttp.Header(early, "retry-after-ms"));

        clock.Advance(TimeSpan.FromMilliseconds(50));
        using var due = await MockModelHttp.PostAsync(client, "due", MockModelHttp.Body, Ct);
        Assert.Equal(HttpStatusCode.OK, due.StatusCode);
        Assert.Equal("0", MockModelHttp.Header(due, "x-ratelimit-remaining-requests"));

        var stats = server.Stats;
        Assert.Equal(8, stats.Total);
        Assert.Equal(6, stats.Succeeded);
        Assert.Equal(2, stats.RateLimited);
        Assert.Equal(new Dictionary<int, long> { [200] = 6, [429] = 2 }, stats.StatusCounts);
        Assert.All(stats.Injected.Values, count => Assert.Equal(0, count));
    }

    [Fact]
    public async Task Refusal_IsAnsweredAtOnce_WithoutTheLatency()
    {
        // Admitted requests would wait a minute on a clock that never moves: only an answer without
        // latency can arrive.
        var clock = new TimerCountingClock();
        var options = new MockModelOptions { RequestsPerSecond = 1, LatencyMin = TimeSpan.FromMinutes(1), LatencyMax = TimeSpan.FromMinutes(1), TimeProvider = clock };
        await using var server = await MockModelServer.StartAsync(options, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };
        using var abort = CancellationTokenSource.CreateLinkedTokenSource(Ct);

        var held = MockModelHttp.PostAsync(client, "held", MockModelHttp.Body, abort.Token);
        await clock.WaitForTimersAsync(1);
        using var refused = await MockModelHttp.PostAsync(client, "refused", MockModelHttp.Body, Ct);

        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("1000", MockModelHttp.Header(refused, "retry-after-ms"));
        Assert.False(held.IsCompleted);
        await abort.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => held);
    }

    [Fact]
    public async Task Every200_CarriesBothLimits_WithRemainingFallingByOneRequestAndItsTokens()
    {
        var clock = new TimerCountingClock();
        await using var server = await MockModelServer.StartAsync(new MockModelOptions { RequestsPerSecond = 10, TokensPerSecond = 1000, TimeProvider = clock }, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        for (var i = 1; i <= 3; i++)
        {
            using var response = await MockModelHttp.PostAsync(client, $"c-{i}", MockModelHttp.Body, Ct);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("600", MockModelHttp.Header(response, "x-ratelimit-limit-requests"));
            Assert.Equal($"{10 - i}", MockModelHttp.Header(response, "x-ratelimit-remaining-requests"));
            Assert.Equal($"{i * 100}ms", MockModelHttp.Header(response, "x-ratelimit-reset-requests"));
            Assert.Equal("60000", MockModelHttp.Header(response, "x-ratelimit-limit-tokens"));
            Assert.Equal($"{1000 - (i * BodyTokens)}", MockModelHttp.Header(response, "x-ratelimit-remaining-tokens"));
            Assert.Equal($"{i * BodyTokens}ms", MockModelHttp.Header(response, "x-ratelimit-reset-tokens"));
            Assert.Null(MockModelHttp.Header(response, "retry-after-ms"));
            Assert.Null(response.Headers.RetryAfter);
        }

        clock.Advance(TimeSpan.FromSeconds(5));
        using var rested = await MockModelHttp.PostAsync(client, "rested", MockModelHttp.Body, Ct);
        Assert.Equal("9", MockModelHttp.Header(rested, "x-ratelimit-remaining-requests"));
        Assert.Equal($"{1000 - BodyTokens}", MockModelHttp.Header(rested, "x-ratelimit-remaining-tokens"));
        Assert.Equal(4L * BodyTokens, server.Stats.TokensAdmitted);
    }

    [Fact]
    public async Task TokenBucket_RefusesARequestItCannotCover_AndSaysWhenItCould()
    {
        var clock = new TimerCountingClock();
        await using var server = await MockModelServer.StartAsync(new MockModelOptions { TokensPerSecond = 100, TimeProvider = clock }, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        // 100 tokens hold six requests of 16 and leave 4.
        for (var i = 0; i < 6; i++)
        {
            using var admitted = await MockModelHttp.PostAsync(client, $"t-{i}", MockModelHttp.Body, Ct);
            Assert.Equal(HttpStatusCode.OK, admitted.StatusCode);
        }

        using var refused = await MockModelHttp.PostAsync(client, "refused", MockModelHttp.Body, Ct);

        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.Equal("0", MockModelHttp.Header(refused, "x-ratelimit-remaining-tokens"));
        Assert.Equal("960ms", MockModelHttp.Header(refused, "x-ratelimit-reset-tokens"));
        Assert.Equal($"{(BodyTokens - 4) * 10}", MockModelHttp.Header(refused, "retry-after-ms"));
        Assert.Null(MockModelHttp.Header(refused, "x-ratelimit-limit-requests"));
        var error = (await refused.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("error");
        Assert.Equal($"Rate limit reached for gpt-4o-mini on tokens per min (TPM): Limit 6000, Requested {BodyTokens}. Please try again in 120ms.", error.GetProperty("message").GetString());
        Assert.Equal(1, server.Stats.RateLimited);
        Assert.Equal(6L * BodyTokens, server.Stats.TokensAdmitted);
    }

    [Fact]
    public async Task NoLimits_NoRateLimitHeaders()
    {
        await using var server = await MockModelServer.StartAsync(new MockModelOptions(), Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        using var response = await MockModelHttp.PostAsync(client, "free", MockModelHttp.Body, Ct);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.DoesNotContain(response.Headers, header => header.Key.StartsWith("x-ratelimit-", StringComparison.OrdinalIgnoreCase));
    }

    [Fact]
    public async Task PromptTokens_AreCountedFromTheMessages_AsOpenAiCountsThem()
    {
        await using var server = await MockModelServer.StartAsync(new MockModelOptions { TokensPerSecond = 10_000 }, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };
        const string System = "You are a careful assistant. Answer in one sentence.";
        const string Question = "Summarise the plot of Hamlet, including the fate of Ophelia and Polonius.";
        const string Name = "reviewer_7";
        const string Look = "What is in this picture?";
        const string Detail = "Describe the colours, too.";
        var body = JsonSerializer.Serialize(new
        {
            model = "gpt-4o",
            messages = new object[]
            {
                new { role = "system", content = System },
                new { role = "user", name = Name, content = Question },
                new
                {
                    role = "user",
                    content = new object[]
                    {
                        new { type = "text", text = Look },
                        new { type = "image_url", image_url = new { url = "https://example.com/cat.png" } },
                        new { type = "text", text = Detail },
                    },
                },
            },
        });

        // The cookbook's count, with the tokenizer of gpt-4o: 3 per message, its role and content,
        // a name's tokens plus 1, 85 per image, and 3 to prime the reply.
        var tokenizer = TiktokenTokenizer.CreateForModel("gpt-4o");
        int Count(string text) => tokenizer.CountTokens(text);
        var expected = 3 + Count("system") + Count(System)
            + 3 + Count("user") + Count(Question) + 1 + Count(Name)
            + 3 + Count("user") + Count(Look) + 85 + Count(Detail)
            + 3;

        using var response = await MockModelHttp.PostAsync(client, "counted", body, Ct);

        var usage = (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("usage");
        Assert.Equal(expected, usage.GetProperty("prompt_tokens").GetInt32());
        Assert.Equal(expected + CompletionTokens, usage.GetProperty("total_tokens").GetInt32());
        Assert.Equal($"{10_000 - expected - CompletionTokens}", MockModelHttp.Header(response, "x-ratelimit-remaining-tokens"));
        Assert.Equal(1, Count("hello"));
        Assert.Equal(1, Count("user"));
    }

    [Theory]
    [InlineData("""{"prompt":"no messages in this body at all"}""")]
    [InlineData("not json")]
    public async Task BodyWithoutMessages_CostsAQuarterTokenPerCharacter(string body)
    {
        await using var server = await MockModelServer.StartAsync(new MockModelOptions { TokensPerSecond = 1000 }, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        using var response = await MockModelHttp.PostAsync(client, "estimated", body, Ct);

        Assert.Equal($"{1000 - (body.Length / 4) - CompletionTokens}", MockModelHttp.Header(response, "x-ratelimit-remaining-tokens"));
    }

    [Theory]
    [InlineData("", 8, 8)]
    [InlineData(""","max_tokens":3""", 8, 3)]
    [InlineData(""","max_tokens":100""", 8, 8)]
    [InlineData(""","max_completion_tokens":5,"max_tokens":2""", 8, 5)]
    [InlineData(""","max_tokens":16""", 12, 12)]
    [InlineData(""","max_tokens":0""", 12, 0)]
    public async Task CompletionTokens_AreCappedByTheRequestsMaximum(string maximum, int configured, int expected)
    {
        await using var server = await MockModelServer.StartAsync(new MockModelOptions { CompletionTokens = configured }, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };
        var body = """{"model":"m","messages":[{"role":"user","content":"hello"}]""" + maximum + "}";

        var usage = (await MockModelHttp.CompleteAsync(client, "capped", body, Ct)).GetProperty("usage");

        Assert.Equal(expected, usage.GetProperty("completion_tokens").GetInt32());
        Assert.Equal(MockModelHttp.BodyPromptTokens + expected, usage.GetProperty("total_tokens").GetInt32());
    }
}
