using System.Net.Http.Headers;
using System.Text.Json.Nodes;
using Nightshift.Models;
using Nightshift.Pools;

namespace Nightshift.Tests.Models;

/// <summary>The Anthropic provider's translation, both ways, and its reading of the rate-limit headers: pure functions, no server.</summary>
public sealed class AnthropicTranslationTests
{
    private static readonly DateTimeOffset Now = new(2026, 12, 2, 6, 0, 0, TimeSpan.Zero);

    [Fact]
    public void Request_MovesSystemMessagesToTheTopLevel_AndCarriesTemperatureStopAndMaxTokens()
    {
        var request = AnthropicTranslation.ToMessagesRequest(
            """{"model":"gpt-4o","messages":[{"role":"system","content":"Be brief."},{"role":"developer","content":[{"type":"text","text":"Answer in French."}]},{"role":"user","content":"hello"}],"temperature":0.3,"top_p":0.9,"stop":["END","STOP"],"max_tokens":77,"user":"u-1","seed":7}""",
            "claude-test", defaultMaxTokens: 1024);

        var expected = JsonNode.Parse("""{"model":"claude-test","max_tokens":77,"system":"Be brief.\n\nAnswer in French.","messages":[{"role":"user","content":"hello"}],"temperature":0.3,"top_p":0.9,"stop_sequences":["END","STOP"],"metadata":{"user_id":"u-1"}}""");
        Assert.True(JsonNode.DeepEquals(expected, request), request.ToJsonString());
    }

    [Theory]
    [InlineData("""{"messages":[{"role":"user","content":"x"}]}""", 1024)]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"max_tokens":50}""", 50)]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"max_tokens":50,"max_completion_tokens":60}""", 60)]
    public void Request_TakesMaxCompletionTokens_ThenMaxTokens_ThenTheConfiguredDefault(string body, long maxTokens)
    {
        var request = AnthropicTranslation.ToMessagesRequest(body, "claude-test", defaultMaxTokens: 1024);

        Assert.Equal(maxTokens, request["max_tokens"]!.GetValue<long>());
        Assert.Null(request["system"]);
    }

    [Fact]
    public void Request_TurnsASingleStopIntoAList_AndCapsTheTemperatureAtAnthropicsMaximum()
    {
        var request = AnthropicTranslation.ToMessagesRequest("""{"messages":[{"role":"user","content":"x"}],"stop":"\n\n","temperature":1.7}""", "m", 10);

        Assert.True(JsonNode.DeepEquals(JsonNode.Parse("""["\n\n"]"""), request["stop_sequences"]));
        Assert.Equal(1.0, request["temperature"]!.GetValue<double>());
    }

    [Fact]
    public void Request_TranslatesImageParts_DataUrlsAsBase64_OthersAsUrls()
    {
        var request = AnthropicTranslation.ToMessagesRequest(
            """{"messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"data:image/png;base64,iVBORw0KGgo="}},{"type":"image_url","image_url":{"url":"https://example.com/cat.jpg","detail":"high"}}]}]}""",
            "m", 10);

        var expected = JsonNode.Parse("""[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}},{"type":"image","source":{"type":"url","url":"https://example.com/cat.jpg"}}]}]""");
        Assert.True(JsonNode.DeepEquals(expected, request["messages"]), request["messages"]!.ToJsonString());
    }

    [Fact]
    public void Request_MergesConsecutiveMessagesOfOneRole_SoTurnsAlternate()
    {
        var request = AnthropicTranslation.ToMessagesRequest(
            """{"messages":[{"role":"user","content":"first"},{"role":"user","content":[{"type":"text","text":"second"}]},{"role":"assistant","content":"ok"},{"role":"user","content":"third"}]}""",
            "m", 10);

        var expected = JsonNode.Parse("""[{"role":"user","content":[{"type":"text","text":"first"},{"type":"text","text":"second"}]},{"role":"assistant","content":"ok"},{"role":"user","content":"third"}]""");
        Assert.True(JsonNode.DeepEquals(expected, request["messages"]), request["messages"]!.ToJsonString());
    }

    [Theory]
    [InlineData("not json", "not JSON")]
    [InlineData("""{"model":"m"}""", "no messages array")]
    [InlineData("""{"messages":[{"role":"tool","content":"42","tool_call_id":"c1"}]}""", "role 'tool'")]
    [InlineData("""{"messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]}]}""", "type 'input_audio'")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}]}""", "tools")]
    [InlineData("""{"messages":[{"role":"user","content":"x"}],"n":3}""", "n must be 1")]
    public void Request_WithoutAMessagesCounterpart_IsRefused_SayingWhat(string body, string reason)
    {
        var refused = Assert.Throws<FormatException>(() => AnthropicTranslation.ToMessagesRequest(body, "m", 10));

        Assert.Contains(reason, refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Answer_BecomesAChatCompletion_WithTheTextUsageAndFinishReason()
    {
        var translated = AnthropicTranslation.ToChatCompletion(
            """{"id":"msg_01","type":"message","role":"assistant","model":"claude-test","content":[{"type":"text","text":"Bonjour"},{"type":"text","text":" !"}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":12,"cache_creation_input_tokens":3,"cache_read_input_tokens":5,"output_tokens":4}}""",
            Now);

        var (body, usage, finishReason) = Assert.NotNull(translated);
        var expected = JsonNode.Parse("""{"id":"msg_01","object":"chat.completion","created":0,"model":"claude-test","choices":[{"index":0,"message":{"role":"assistant","content":"Bonjour !"},"finish_reason":"stop"}],"usage":{"prompt_tokens":20,"completion_tokens":4,"total_tokens":24,"prompt_tokens_details":{"cached_tokens":5}}}""")!;
        expected["created"] = Now.ToUnixTimeSeconds();
        Assert.True(JsonNode.DeepEquals(expected, JsonNode.Parse(body)), body);
        Assert.Equal(new TokenUsage(20, 4, 5), usage);
        Assert.Equal("stop", finishReason);
    }

    [Theory]
    [InlineData("end_turn", "stop")]
    [InlineData("stop_sequence", "stop")]
    [InlineData("max_tokens", "length")]
    [InlineData("model_context_window_exceeded", "length")]
    [InlineData("tool_use", "tool_calls")]
    [InlineData("refusal", "content_filter")]
    [InlineData(null, "stop")]
    public void StopReason_MapsToOpenAisFinishReason(string? stopReason, string finishReason) =>
        Assert.Equal(finishReason, AnthropicTranslation.FinishReason(stopReason));

    [Theory]
    [InlineData("""{"type":"error","error":{"type":"api_error","message":"x"}}""")]
    [InlineData("""{"id":"msg_01","content":"not a list"}""")]
    [InlineData("""{"id":"msg_01","content":[{"type":"te""")]
    public void Answer_ThatIsNoMessage_IsNotTranslated(string answer) => Assert.Null(AnthropicTranslation.ToChatCompletion(answer, Now));

    [Fact]
    public void RateLimitHeaders_GiveLimitsRemainingAndResetsFromRfc3339Times()
    {
        var headers = Headers(new()
        {
            ["anthropic-ratelimit-requests-limit"] = "50",
            ["anthropic-ratelimit-requests-remaining"] = "0",
            ["anthropic-ratelimit-requests-reset"] = "2026-12-02T06:00:12Z",
            ["anthropic-ratelimit-tokens-limit"] = "40000",
            ["anthropic-ratelimit-tokens-remaining"] = "39000",
            ["anthropic-ratelimit-tokens-reset"] = "2026-12-02T06:00:03Z",
        });

        var limits = AnthropicRateLimitHeaders.Read(headers, Now);

        Assert.Equal(new ProviderRateLimits(50, 0, TimeSpan.FromSeconds(12), 40000, 39000, TimeSpan.FromSeconds(3)), limits);
        Assert.Equal(TimeSpan.FromSeconds(12), AnthropicRateLimitHeaders.Wait(headers, Now));
        Assert.Null(AnthropicRateLimitHeaders.Read(Headers(new() { ["request-id"] = "req_1" }), Now));
    }

    [Theory]
    [InlineData("7", 7.0)]
    [InlineData("Wed, 02 Dec 2026 06:00:30 GMT", 30.0)]
    public void RetryAfter_InSecondsOrAsADate_IsTheWait(string retryAfter, double seconds)
    {
        var headers = Headers(new() { ["retry-after"] = retryAfter, ["anthropic-ratelimit-requests-reset"] = "2026-12-02T06:01:00Z" });

        Assert.Equal(TimeSpan.FromSeconds(seconds), AnthropicRateLimitHeaders.Wait(headers, Now));
    }

    private static HttpResponseHeaders Headers(Dictionary<string, string> values)
    {
        using var response = new HttpResponseMessage();
        foreach (var (name, value) in values)
        {
            response.Headers.TryAddWithoutValidation(name, value);
        }

        return response.Headers;
    }
}
