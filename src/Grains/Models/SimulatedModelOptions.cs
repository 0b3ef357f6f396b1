using System.ComponentModel.DataAnnotations;

namespace Nightshift.Models;

/// <summary>The built-in simulated model (configuration section <c>Nightshift:Simulated</c>).</summary>
public sealed class SimulatedModelOptions
{
    public const string Section = "Nightshift:Simulated";

    /// <summary>Shortest latency of a call. Default: 0.</summary>
    public TimeSpan LatencyMin { get; set; }

    /// <summary>Longest latency of a call; equal to <see cref="LatencyMin"/> for a fixed latency. Default: 0.</summary>
    public TimeSpan LatencyMax { get; set; }

    /// <summary>Share of calls that answer 500 (0 to 1). Default: 0.</summary>
    [Range(0.0, 1.0)]
    public double ErrorRate { get; set; }

    /// <summary>Share of calls that answer 429 (0 to 1). Default: 0.</summary>
    [Range(0.0, 1.0)]
    public double RateLimitRate { get; set; }

    /// <summary>The <c>Retry-After</c> a simulated 429 carries. Default: 1 s.</summary>
    public TimeSpan RetryAfter { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>When set, every call's custom_id is appended to this file as it starts (for tests that count calls across process deaths). Default: none.</summary>
    public string? CallLog { get; set; }
}
