using System.ComponentModel.DataAnnotations;

namespace Nightshift.Models;

/// <summary>The Anthropic provider (configuration section <c>Nightshift:Anthropic</c>).</summary>
public sealed class AnthropicOptions
{
    public const string Section = "Nightshift:Anthropic";

    /// <summary>
    /// The <c>max_tokens</c> a request is sent with when its body sets neither <c>max_completion_tokens</c>
    /// nor <c>max_tokens</c>: the Messages API requires one. Default: 1024.
    /// </summary>
    [Range(1, 10_000_000)]
    public int DefaultMaxTokens { get; set; } = 1024;
}
