using System.ComponentModel.DataAnnotations;

namespace Nightshift.Api;

/// <summary>The HTTP API (configuration section <c>Nightshift:Api</c>).</summary>
public sealed class ApiOptions
{
    public const string Section = "Nightshift:Api";

    /// <summary>
    /// API keys accepted as <c>Authorization: Bearer &lt;key&gt;</c> on everything but <c>/health</c>.
    /// None: no authentication, allowed only on loopback unless <see cref="AllowAnonymous"/>. Default: none.
    /// </summary>
    public string[] Keys { get; set; } = [];

    /// <summary>Serve without keys on a non-loopback address (behind a gateway that authenticates). Default: false.</summary>
    public bool AllowAnonymous { get; set; }

    /// <summary>Largest JSONL upload, in bytes; a larger one is refused with 413 and nothing is written. Default: 2 GiB.</summary>
    [Range(1024, long.MaxValue)]
    public long MaxUploadBytes { get; set; } = 2L * 1024 * 1024 * 1024;

    /// <summary>Largest JSON submission (<c>{pool, items, options}</c>), which is parsed whole; large batches belong in a JSONL upload. Default: 32 MiB.</summary>
    [Range(1024, int.MaxValue)]
    public int MaxJsonBytes { get; set; } = 32 * 1024 * 1024;
}
