using System.Text.Json;

namespace Nightshift.MockModel;

/// <summary>OpenAI's and Azure OpenAI's chat completions: <c>x-ratelimit-*</c> headers, <c>chat.completion</c> answers.</summary>
internal sealed class OpenAiDialect : IProviderDialect
{
    public MockResponse? Reject(HttpRequest request, string body) => null;

    public void WriteRateLimitHeaders(IHeaderDictionary headers, Admission admission, DateTimeOffset now) => RateLimitHeaders.Write(headers, admission);

    public void WriteRetryAfter(IHeaderDictionary headers, TimeSpan wait) => RateLimitHeaders.WriteRetryAfter(headers, wait);

    public MockResponse Error(int status, string message, string type, string? code = null) =>
        new(status, JsonSerializer.Serialize(new ApiError(new ApiErrorDetail(message, type, code)), MockModelApi.Json));

    public string Answer(string body, string content, CompletionRequest completion, string model, DateTimeOffset now) => JsonSerializer.Serialize(new ChatCompletion(
        "chatcmpl-" + Guid.NewGuid().ToString("n"),
        "chat.completion",
        now.ToUnixTimeSeconds(),
        model,
        [new ChatChoice(0, new ChatMessage("assistant", content), "stop")],
        new ChatUsage(completion.PromptTokens, completion.CompletionTokens, completion.Tokens)), MockModelApi.Json);
}
