using System.ComponentModel.DataAnnotations;

namespace Nightshift.Submission;

/// <summary>Limits on submitted input (configuration section <c>Nightshift:Submission</c>).</summary>
public sealed class SubmissionOptions
{
    public const string Section = "Nightshift:Submission";

    /// <summary>Longest accepted JSONL line, in bytes. Default: 1 MiB.</summary>
    [Range(1024, int.MaxValue)]
    public int MaxLineBytes { get; set; } = 1024 * 1024;

    /// <summary>Errors reported for a rejected batch before reading stops. Default: 100.</summary>
    [Range(1, 100_000)]
    public int MaxReportedErrors { get; set; } = 100;

    /// <summary>Longest accepted <c>custom_id</c>, in characters. Default: 512.</summary>
    [Range(1, 65_536)]
    public int MaxCustomIdLength { get; set; } = 512;
}
