using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.MockModel;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.MockModel;

/// <summary>How the mock model's tests call it: over HTTP on loopback, as Nightshift does.</summary>
internal static class MockModelHttp
{
    public const string Body = """{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hello"}]}""";

    /// <summary>
    /// <see cref="Body"/>'s prompt tokens, counted by hand: 3 per message + "user" (1) + "hello" (1) + 3
    /// to prime the reply.
    /// </summary>
    public const int BodyPromptTokens = 8;

    public static Task<HttpResponseMessage> PostAsync(HttpClient client, string customId, string body, CancellationToken cancellationToken) =>
        PostAsync(client, "v1/chat/completions", customId, body, cancellationToken);

    public static async Task<HttpResponseMessage> PostAsync(HttpClient client, string path, string customId, string body, CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Post, path) { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Add("X-Nightshift-Custom-Id", customId);
        return await client.SendAsync(request, cancellationToken);
    }

    /// <summary>Posts <paramref name="body"/>, asserts a 200, and returns the completion.</summary>
    public static async Task<JsonElement> CompleteAsync(HttpClient client, string customId, string body, CancellationToken cancellationToken)
    {
        using var response = await PostAsync(client, customId, body, cancellationToken);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadFromJsonAsync<JsonElement>(cancellationToken);
    }

    public static string? Content(JsonElement completion) =>
        completion.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString();

    /// <summary>The one value of response header <paramref name="name"/>, or null when it is absent.</summary>
    public static string? Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? values.Single() : null;

    /// <summary>Polls the server's own counters until <paramref name="condition"/> holds; the deadline only bounds a failure.</summary>
    public static Task WaitUntilAsync(MockModelServer server, Func<MockModelStats, bool> condition, string expectation) =>
        Eventually.MatchesAsync(() => server.Stats, condition, stats => $"{expectation}: {stats}", TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(5));
}
