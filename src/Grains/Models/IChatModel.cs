using Nightshift.Pools;

namespace Nightshift.Models;

/// <summary>
/// One model endpoint. An implementation makes exactly one request per call and never retries on its
/// own: Nightshift owns retrying.
/// </summary>
public interface IChatModel
{
    Task<ModelCallResult> CompleteAsync(ModelRequest request, CancellationToken cancellationToken);
}

/// <summary>One attempt of one item. <see cref="Body"/> is the JSONL line's <c>body</c>, passed through unchanged.</summary>
public sealed record ModelRequest(string CustomId, string Body, string Model, int Attempt);

public enum ModelCallStatus
{
    /// <summary>A 2xx response with a body.</summary>
    Succeeded,

    /// <summary>A non-2xx response; <see cref="ModelCallResult.StatusCode"/> says which.</summary>
    HttpError,

    /// <summary>No response within the attempt's timeout.</summary>
    Timeout,

    /// <summary>The connection failed or the response could not be read.</summary>
    NetworkError,

    /// <summary>The pool's model cannot be called at all (unknown provider, missing key variable): permanent.</summary>
    Misconfigured,

    /// <summary>A 2xx answer the provider's content filter cut off: billed and stored, but permanent failure.</summary>
    Refused,
}

public sealed record ModelCallResult(
    ModelCallStatus Status,
    int StatusCode,
    string? Body,
    TokenUsage Usage,
    TimeSpan? RetryAfter,
    string? Error)
{
    /// <summary>What the provider's answer said about its rate limits; <c>null</c> when there was no answer.</summary>
    public ProviderRateLimits? Limits { get; init; }

    /// <summary>A non-429 answer the provider documents as meaning the same, "too many calls, back off" (Anthropic's 529 overloaded).</summary>
    public bool Overloaded { get; init; }

    /// <summary>The provider asked for fewer calls: a 429 or an <see cref="Overloaded"/> answer. It shrinks the pool's cap and spends the 429 budget.</summary>
    public bool RateLimited => Status == ModelCallStatus.HttpError && (StatusCode == 429 || Overloaded);

    public static ModelCallResult Success(string body, TokenUsage usage) =>
        new(ModelCallStatus.Succeeded, 200, body, usage, null, null);

    public static ModelCallResult Http(int statusCode, string? body, string error, TimeSpan? retryAfter = null) =>
        new(ModelCallStatus.HttpError, statusCode, body, default, retryAfter, error);

    public static ModelCallResult TimedOut(TimeSpan timeout) =>
        new(ModelCallStatus.Timeout, 0, null, default, null, $"no response within the attempt timeout of {timeout.TotalSeconds:0.###} s");

    public static ModelCallResult Network(string error) =>
        new(ModelCallStatus.NetworkError, 0, null, default, null, error);

    public static ModelCallResult ContentFiltered(string body, TokenUsage usage, string error) =>
        new(ModelCallStatus.Refused, 200, body, usage, null, error);

    public static ModelCallResult Unusable(string error) =>
        new(ModelCallStatus.Misconfigured, 0, null, default, null, error);
}
