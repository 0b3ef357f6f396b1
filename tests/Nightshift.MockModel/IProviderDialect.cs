namespace Nightshift.MockModel;

/// <summary>
/// How one provider's API speaks, for <see cref="CompletionEndpoint"/>: what it refuses before any model work,
/// its rate-limit and retry headers, and the shapes of its errors and answers.
/// </summary>
internal interface IProviderDialect
{
    /// <summary>The answer to a request whose headers or body the API does not take (a 400 or 401 saying why); <c>null</c> when they are right.</summary>
    MockResponse? Reject(HttpRequest request, string body);

    /// <summary>The rate-limit headers of every answer, from the buckets as they stand after <paramref name="admission"/>.</summary>
    void WriteRateLimitHeaders(IHeaderDictionary headers, Admission admission, DateTimeOffset now);

    /// <summary>The headers that tell a client how long to wait before trying again.</summary>
    void WriteRetryAfter(IHeaderDictionary headers, TimeSpan wait);

    /// <summary>An error answer in the API's shape.</summary>
    MockResponse Error(int status, string message, string type, string? code = null);

    /// <summary>The successful answer's body to the request <paramref name="body"/>, saying <paramref name="content"/> (see <see cref="MockModelServer.ExpectedContent"/>).</summary>
    string Answer(string body, string content, CompletionRequest completion, string model, DateTimeOffset now);
}
