using System.ClientModel.Primitives;
using System.Net;
using Nightshift.Models;
using Nightshift.Pools;

namespace Nightshift.Tests.Models;

/// <summary>How long a provider asks us to wait, read from its response headers.</summary>
public sealed class ProviderWaitTests
{
    [Theory]
    [InlineData("20ms", 20)]
    [InlineData("1s", 1_000)]
    [InlineData("6m0s", 360_000)]
    [InlineData("1h2m3.5s", 3_723_500)]
    [InlineData("2.5", 2_500)]
    public void ResetDuration_ReadsGoStyleDurations(string text, double milliseconds)
    {
        Assert.True(ResetDuration.TryParse(text, out var duration));
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), duration);
    }

    [Theory]
    [InlineData("")]
    [InlineData("soon")]
    [InlineData("5x")]
    [InlineData("s")]
    [InlineData("-1")]
    public void ResetDuration_RejectsWhatItCannotRead(string text) => Assert.False(ResetDuration.TryParse(text, out _));

    [Theory]
    [InlineData("retry-after-ms", "1500", 1_500)]
    [InlineData("Retry-After", "3", 3_000)]
    [InlineData("x-ratelimit-reset-tokens", "250ms", 250)]
    public void ProviderWait_ReadsEachHeader(string header, string value, double milliseconds) =>
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), OpenAiClientModel.ProviderWait(Headers((header, value))));

    [Fact]
    public void ProviderWait_PrefersMilliseconds_ThenRetryAfter_ThenTheLongerReset()
    {
        Assert.Equal(TimeSpan.FromMilliseconds(700), OpenAiClientModel.ProviderWait(Headers(("Retry-After", "9"), ("retry-after-ms", "700"))));
        Assert.Equal(TimeSpan.FromSeconds(9), OpenAiClientModel.ProviderWait(Headers(("Retry-After", "9"), ("x-ratelimit-reset-requests", "20s"))));
        Assert.Equal(TimeSpan.FromSeconds(20), OpenAiClientModel.ProviderWait(Headers(("x-ratelimit-reset-requests", "20s"), ("x-ratelimit-reset-tokens", "2s"))));
        Assert.Null(OpenAiClientModel.ProviderWait(Headers()));
    }

    [Fact]
    public void RateLimitHeaders_ReadEveryFigure_InOpenAisSpelling()
    {
        var limits = RateLimitHeaders.Read(Headers(
            ("x-ratelimit-limit-requests", "24000"), ("x-ratelimit-remaining-requests", "23999"), ("x-ratelimit-reset-requests", "2ms"),
            ("x-ratelimit-limit-tokens", "600000"), ("x-ratelimit-remaining-tokens", "599500"), ("x-ratelimit-reset-tokens", "50ms")));

        Assert.Equal(new ProviderRateLimits(24_000, 23_999, TimeSpan.FromMilliseconds(2), 600_000, 599_500, TimeSpan.FromMilliseconds(50)), limits);
        Assert.False(limits!.QuotaSpent);
    }

    [Fact]
    public void RateLimitHeaders_TakeAzuresUnknownFiguresAsAbsent_AndSecondsAsResets()
    {
        var limits = RateLimitHeaders.Read(Headers(("x-ratelimit-limit-tokens", "-1"), ("x-ratelimit-remaining-tokens", "0"), ("x-ratelimit-reset-tokens", "12")));

        Assert.Equal(new ProviderRateLimits(null, null, null, null, 0, TimeSpan.FromSeconds(12)), limits);
        Assert.True(limits!.QuotaSpent);
        Assert.Null(RateLimitHeaders.Read(Headers(("Retry-After", "1"))));
    }

    private static PipelineResponseHeaders Headers(params (string Name, string Value)[] headers)
    {
        var message = new HttpResponseMessage(HttpStatusCode.TooManyRequests);
        foreach (var (name, value) in headers)
        {
            message.Headers.TryAddWithoutValidation(name, value);
        }

        return new TestResponse(message).Headers;
    }

    /// <summary>The headers as the client pipeline presents them, without a server.</summary>
    private sealed class TestResponse(HttpResponseMessage message) : PipelineResponse
    {
        public override int Status => (int)message.StatusCode;

        public override string ReasonPhrase => message.ReasonPhrase ?? "";

        public override Stream? ContentStream { get; set; }

        public override BinaryData Content => BinaryData.Empty;

        protected override PipelineResponseHeaders HeadersCore => new MessageHeaders(message);

        public override BinaryData BufferContent(CancellationToken cancellationToken = default) => BinaryData.Empty;

        public override ValueTask<BinaryData> BufferContentAsync(CancellationToken cancellationToken = default) => ValueTask.FromResult(BinaryData.Empty);

        public override void Dispose() => message.Dispose();
    }

    private sealed class MessageHeaders(HttpResponseMessage message) : PipelineResponseHeaders
    {
        public override bool TryGetValue(string name, out string? value)
        {
            value = message.Headers.TryGetValues(name, out var values) ? string.Join(",", values) : null;
            return value is not null;
        }

        public override bool TryGetValues(string name, out IEnumerable<string>? values) => message.Headers.TryGetValues(name, out values);

        public override IEnumerator<KeyValuePair<string, string>> GetEnumerator() =>
            message.Headers.Select(h => new KeyValuePair<string, string>(h.Key, string.Join(",", h.Value))).GetEnumerator();
    }
}
