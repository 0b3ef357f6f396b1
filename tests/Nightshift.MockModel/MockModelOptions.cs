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
    /// Fault hook, consulted on every completion request: a non-null answer is sent instead of the
    /// completion (after the latency and the answer's own <see cref="MockResponse.Delay"/>). May be
    /// replaced while the server runs. Default: none, every request gets a completion.
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

        if (LatencyMax < LatencyMin)
        {
            throw new ArgumentOutOfRangeException(nameof(LatencyMax), LatencyMax,
                $"{nameof(MockModelOptions)}.{nameof(LatencyMax)} must not be less than {nameof(LatencyMin)} ({LatencyMin}).");
        }
    }
}
