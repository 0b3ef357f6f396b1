using System.ComponentModel.DataAnnotations;

namespace Nightshift.Api.Webhooks;

/// <summary>Batch webhooks (configuration section <c>Nightshift:Webhooks</c>): where they may go, how they are signed and retried.</summary>
public sealed class WebhookOptions : IValidatableObject
{
    public const string Section = "Nightshift:Webhooks";

    /// <summary>
    /// The URL prefixes a batch's <c>callbackUrl</c> may start with (scheme, host and port at least, e.g.
    /// <c>https://hooks.example.com/</c>); any other is refused at submission, and a delivery whose URL is no
    /// longer allowed is given up. None: no batch may ask for a webhook. Default: none.
    /// </summary>
    public string[] AllowedUrls { get; set; } = [];

    /// <summary>The key of the HMAC-SHA256 signature each delivery carries; required with <see cref="AllowedUrls"/>. Never logged.</summary>
    public string? Secret { get; set; }

    /// <summary>Attempts per delivery before it is given up. Default: 10.</summary>
    [Range(1, 100)]
    public int MaxAttempts { get; set; } = 10;

    /// <summary>First wait after a failed attempt; doubled per attempt, with jitter, up to <see cref="MaxDelay"/>. Default: 1 s.</summary>
    public TimeSpan BaseDelay { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Longest wait between attempts. Default: 5 min.</summary>
    public TimeSpan MaxDelay { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>How long one attempt may take before it counts as failed. Default: 10 s.</summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Why <paramref name="url"/> may not be called, or <c>null</c> when it starts with one of <see cref="AllowedUrls"/>
    /// (compared as absolute URIs, so the case of scheme and host and a default port do not matter).
    /// </summary>
    public string? Refusal(string url)
    {
        if (AllowedUrls.Length == 0)
        {
            return $"no webhook URL is allowed here (set {Section}:AllowedUrls)";
        }

        var allowed = Uri.TryCreate(url, UriKind.Absolute, out var target) && AllowedUrls.Any(prefix =>
            Uri.TryCreate(prefix, UriKind.Absolute, out var allowedPrefix) && target.AbsoluteUri.StartsWith(allowedPrefix.AbsoluteUri, StringComparison.OrdinalIgnoreCase));
        return allowed ? null : $"'{url}' starts with none of the URLs {Section}:AllowedUrls allows";
    }

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        foreach (var prefix in AllowedUrls)
        {
            if (!Uri.TryCreate(prefix, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https"))
            {
                yield return new ValidationResult($"{Section}:AllowedUrls: '{prefix}' is not an absolute http or https URL", [nameof(AllowedUrls)]);
            }
        }

        if (AllowedUrls.Length > 0 && string.IsNullOrEmpty(Secret))
        {
            yield return new ValidationResult($"{Section}:Secret: required when {Section}:AllowedUrls is set (deliveries are signed with it)", [nameof(Secret)]);
        }

        if (BaseDelay <= TimeSpan.Zero || MaxDelay < BaseDelay || Timeout <= TimeSpan.Zero)
        {
            yield return new ValidationResult($"{Section}: BaseDelay and Timeout must be positive and MaxDelay at least BaseDelay", [nameof(BaseDelay)]);
        }
    }
}
