using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.MockModel;

namespace Nightshift.Tests.MockModel;

/// <summary>
/// The mock's Anthropic Messages API: it refuses what the real API refuses, answers in the Messages shape
/// with <c>anthropic-ratelimit-*</c> headers, and injects 429s and 529s with <c>retry-after</c>.
/// </summary>
public sealed class MockMessagesApiTests
{
    private const string Body = """{"model":"claude-test","max_tokens":100,"system":"Be brief.","messages":[{"role":"user","content":"hello"},{"role":"assistant","content":"hi"},{"role":"user","content":[{"type":"text","text":"and?"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"iVBORw0KGgo="}}]}]}""";

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [Fact]
    public async Task WellFormedRequest_IsAnsweredAsAMessage_WithTheRateLimitHeaders()
    {
        await using var server = await MockModelServer.StartAsync(new MockModelOptions { RequestsPerSecond = 2, BurstSeconds = 2 }, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        using var response = await PostAsync(client, Body);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var message = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal(("message", "assistant", "claude-test", "end_turn"),
            (message.GetProperty("type").GetString(), message.GetProperty("role").GetString(), message.GetProperty("model").GetString(), message.GetProperty("stop_reason").GetString()));
        Assert.Equal(MockModelServer.ExpectedContent(Body), message.GetProperty("content")[0].GetProperty("text").GetString());
        Assert.True(message.GetProperty("usage").GetProperty("input_tokens").GetInt32() > 0);
        Assert.Equal("120", MockModelHttp.Header(response, "anthropic-ratelimit-requests-limit"));
        Assert.Equal("3", MockModelHttp.Header(response, "anthropic-ratelimit-requests-remaining"));
        Assert.True(DateTimeOffset.TryParse(MockModelHttp.Header(response, "anthropic-ratelimit-requests-reset"), out _));
        Assert.Equal(1, server.Stats.Succeeded);
    }

    [Theory]
    [InlineData(null, "2023-06-01", Body, HttpStatusCode.Unauthorized, "x-api-key")]
    [InlineData("k", null, Body, HttpStatusCode.BadRequest, "anthropic-version")]
    [InlineData("k", "2023-06-01", """{"model":"m","messages":[{"role":"user","content":"x"}]}""", HttpStatusCode.BadRequest, "max_tokens")]
    [InlineData("k", "2023-06-01", """{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"s"},{"role":"user","content":"x"}]}""", HttpStatusCode.BadRequest, "top-level `system`")]
    [InlineData("k", "2023-06-01", """{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"user","content":"y"}]}""", HttpStatusCode.BadRequest, "alternate")]
    [InlineData("k", "2023-06-01", """{"model":"m","max_tokens":5,"messages":[{"role":"assistant","content":"x"}]}""", HttpStatusCode.BadRequest, "first message")]
    [InlineData("k", "2023-06-01", """{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}""", HttpStatusCode.BadRequest, "type 'image_url'")]
    public async Task MalformedRequest_IsRefused_AsTheApiRefusesIt(string? key, string? version, string body, HttpStatusCode status, string reason)
    {
        await using var server = await MockModelServer.StartAsync(new MockModelOptions(), Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        using var response = await PostAsync(client, body, key, version);

        Assert.Equal(status, response.StatusCode);
        var error = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal("error", error.GetProperty("type").GetString());
        Assert.Contains(reason, error.GetProperty("error").GetProperty("message").GetString(), StringComparison.Ordinal);
        Assert.Equal(0, server.Stats.Succeeded);
    }

    [Theory]
    [InlineData("429", 429, "rate_limit_error")]
    [InlineData("529", 529, "overloaded_error")]
    public async Task InjectedRateLimitAndOverload_CarryRetryAfter_AndTheRateLimitHeaders(string fault, int status, string type)
    {
        await using var server = await MockModelServer.StartAsync(new MockModelOptions
        {
            RequestsPerSecond = 10,
            Fault429 = fault == "429" ? 1 : 0,
            Fault529 = fault == "529" ? 1 : 0,
            RetryAfterSeconds = 3,
        }, Ct);
        using var client = new HttpClient { BaseAddress = server.BaseAddress };

        using var response = await PostAsync(client, Body);

        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal("3", MockModelHttp.Header(response, "retry-after"));
        Assert.Equal("600", MockModelHttp.Header(response, "anthropic-ratelimit-requests-limit"));
        var error = await response.Content.ReadFromJsonAsync<JsonElement>(Ct);
        Assert.Equal(type, error.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal(1, server.Stats.Injected[fault]);
    }

    private static async Task<HttpResponseMessage> PostAsync(HttpClient client, string body, string? key = "sk-ant-test", string? version = "2023-06-01")
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/messages") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        if (key is not null)
        {
            request.Headers.Add("x-api-key", key);
        }

        if (version is not null)
        {
            request.Headers.Add("anthropic-version", version);
        }

        return await client.SendAsync(request, Ct);
    }
}
