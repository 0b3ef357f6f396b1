using System.Net;

namespace Nightshift.MockModel;

/// <summary>How a <see cref="MockModelServer"/> listens and answers.</summary>
public sealed class MockModelOptions
{
    /// <summary>TCP port on 127.0.0.1; 0 picks a free one (read it from <see cref="MockModelServer.BaseAddress"/>). Default: 0.</summary>
    public int Port { get; init; }

    /// <summary>Shortest latency of an answer. Default: 0.</summary>
    public TimeSpan LatencyMin { get; init; }

    /// <summary>Longest latency of an answer; each request waits a uniform random time in [<see cref="LatencyMin"/>, <see cref="LatencyMax"/>]. Default: 0.</summary>
    public TimeSpan LatencyMax { get; init; }

    /// <summary>
    /// Requests per second the provider admits, as a token bucket of <see cref="RequestsPerSecond"/> ×
    /// <see cref="BurstSeconds"/> requests that starts full and refills continuously; a request that
    /// finds it empty gets a 429 at once. Default: none, unlimited.
    /// </summary>
    public double? RequestsPerSecond { get; init; }

    /// <summary>
    /// Tokens per second the provider admits, as a bucket like <see cref="RequestsPerSecond"/>'s; a
    /// request costs the prompt and completion tokens its <c>usage</c> reports. Default: none, unlimited.
    /// </summary>
    public double? TokensPerSecond { get; init; }

    /// <summary>How many seconds of their rate the buckets hold. Default: 1.</summary>
    public double BurstSeconds { get; init; } = 1;

    /// <summary>Completion tokens each answer reports, capped at the request's <c>max_completion_tokens</c> (or else <c>max_tokens</c>). Default: 8.</summary>
    public int CompletionTokens { get; init; } = 8;

    /// <summary>Probability (0 to 1) that an admitted request gets a 429 with <c>Retry-After: </c><see cref="RetryAfterSeconds"/>, as from an overloaded server. Default: 0.</summary>
    public double Fault429 { get; init; }

    /// <summary>Probability (0 to 1) that an admitted request gets a 500. Default: 0.</summary>
    public double Fault500 { get; init; }

    /// <summary>Probability (0 to 1) that an admitted request gets a 503. Default: 0.</summary>
    public double Fault503 { get; init; }

    /// <summary>Probability (0 to 1) that an admitted request gets a 529 "overloaded" (Anthropic's) with <c>Retry-After: </c><see cref="RetryAfterSeconds"/>. Default: 0.</summary>
    public double Fault529 { get; init; }

    /// <summary>Probability (0 to 1) that an admitted request gets a 200 whose body is cut after half its bytes, the connection reset. Default: 0.</summary>
    public double FaultTruncate { get; init; }

    /// <summary>Probability (0 to 1) that an admitted request is held <see cref="HangMs"/> on top of its latency, then answered normally. Default: 0.</summary>
    public double FaultHang { get; init; }

    /// <summary>Milliseconds a hanging request is held (see <see cref="FaultHang"/>). Default: 3000.</summary>
    public int HangMs { get; init; } = 3000;

    /// <summary>The <c>Retry-After</c> seconds of an injected 429 (see <see cref="Fault429"/>). Default: 1.</summary>
    public int RetryAfterSeconds { get; init; } = 1;

    /// <summary>
    /// Seed of the one uniform draw per admitted request that picks its fault, so a run of sequential
    /// requests gets the same faults again. Default: none, a random seed.
    /// </summary>
    public int? Seed { get; init; }

    /// <summary>
    /// A <c>custom_id</c> prefix whose requests wait <see cref="SlowLatency"/> instead of the latency, so one
    /// batch's calls can outlast another's. Default: none.
    /// </summary>
    public string? SlowPrefix { get; init; }

    /// <summary>The latency of the requests <see cref="SlowPrefix"/> picks. Default: 0.</summary>
    public TimeSpan SlowLatency { get; init; }

    /// <summary>
    /// Models (a request's <c>model</c>, or the deployment in the URL) whose answers are JSON,
    /// <see cref="MockModelServer.ExpectedJsonContent"/>; every other model answers plain text. Default: none.
    /// </summary>
    public IReadOnlySet<string> JsonModels { get; init; } = new HashSet<string>(StringComparer.Ordinal);

    /// <summary>The clock of the latency, the buckets and the stats' timestamps; tests pass a fake one. Default: <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider TimeProvider { get; init; } = TimeProvider.System;

    /// <summary>
    /// Fault hook, consulted on every admitted completion request: a non-null answer is sent instead of
    /// the completion or an injected fault (after the latency and the answer's own
    /// <see cref="MockResponse.Delay"/>). May be replaced while the server runs. Default: none, every
    /// request gets a completion.
    /// </summary>
    public Func<MockRequest, MockResponse?>? Respond { get; set; }

    internal void Validate()
    {
        if (Port is < IPEndPoint.MinPort or > IPEndPoint.MaxPort)
        {
            throw new ArgumentOutOfRangeException(nameof(Port), Port, $"{nameof(MockModelOptions)}.{nameof(Port)} must be between 0 and 65535.");
        }

        if (LatencyMin < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(LatencyMin), LatencyMin, $"{nameof(MockModelOptions)}.{nameof(LatencyMin)} must not be negative.");
        }

        if (SlowLatency < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(SlowLatency), SlowLatency, $"{nameof(MockModelOptions)}.{nameof(SlowLatency)} must not be negative.");
        }

        if (LatencyMax < LatencyMin)
        {
            throw new ArgumentOutOfRangeException(nameof(LatencyMax), LatencyMax,
                $"{nameof(MockModelOptions)}.{nameof(LatencyMax)} must not be less than {nameof(LatencyMin)} ({LatencyMin}).");
        }

        if (!(BurstSeconds > 0) || double.IsInfinity(BurstSeconds))
        {
            throw new ArgumentOutOfRangeException(nameof(BurstSeconds), BurstSeconds, $"{nameof(MockModelOptions)}.{nameof(BurstSeconds)} must be a finite number above 0.");
        }

        ValidateRate(RequestsPerSecond, nameof(RequestsPerSecond));
        ValidateRate(TokensPerSecond, nameof(TokensPerSecond));

        // A request bucket that cannot hold one request would refuse every request forever.
        if (RequestsPerSecond * BurstSeconds < 1)
        {
            throw new ArgumentOutOfRangeException(nameof(BurstSeconds), BurstSeconds,
                $"{nameof(MockModelOptions)}.{nameof(RequestsPerSecond)} × {nameof(BurstSeconds)} must be at least 1 request.");
        }

        if (CompletionTokens < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(CompletionTokens), CompletionTokens, $"{nameof(MockModelOptions)}.{nameof(CompletionTokens)} must not be negative.");
        }

        ValidateProbability(Fault429, nameof(Fault429));
        ValidateProbability(Fault500, nameof(Fault500));
        ValidateProbability(Fault503, nameof(Fault503));
        ValidateProbability(Fault529, nameof(Fault529));
        ValidateProbability(FaultTruncate, nameof(FaultTruncate));
        ValidateProbability(FaultHang, nameof(FaultHang));
        var faults = Fault429 + Fault500 + Fault503 + Fault529 + FaultTruncate + FaultHang;
        if (faults > 1)
        {
            throw new ArgumentOutOfRangeException(nameof(Fault429), faults,
                $"{nameof(MockModelOptions)}.{nameof(Fault429)} + {nameof(Fault500)} + {nameof(Fault503)} + {nameof(Fault529)} + {nameof(FaultTruncate)} + {nameof(FaultHang)} must not exceed 1: one draw picks at most one fault.");
        }

        if (HangMs < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(HangMs), HangMs, $"{nameof(MockModelOptions)}.{nameof(HangMs)} must not be negative.");
        }

        if (RetryAfterSeconds < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(RetryAfterSeconds), RetryAfterSeconds, $"{nameof(MockModelOptions)}.{nameof(RetryAfterSeconds)} must not be negative.");
        }

        ArgumentNullException.ThrowIfNull(TimeProvider);
    }

    private static void ValidateRate(double? perSecond, string name)
    {
        if (perSecond is { } rate && (!(rate > 0) || double.IsInfinity(rate)))
        {
            throw new ArgumentOutOfRangeException(name, rate, $"{nameof(MockModelOptions)}.{name} must be a finite number above 0 when set.");
        }
    }

    private static void ValidateProbability(double probability, string name)
    {
        if (probability is not (>= 0 and <= 1))
        {
            throw new ArgumentOutOfRangeException(name, probability, $"{nameof(MockModelOptions)}.{name} must be a probability from 0 to 1.");
        }
    }
}
