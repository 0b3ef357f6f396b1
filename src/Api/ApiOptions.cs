using System.ComponentModel.DataAnnotations;

namespace Nightshift.Api;

/// <summary>The HTTP API (configuration section <c>Nightshift:Api</c>).</summary>
public sealed class ApiOptions : IValidatableObject
{
    public const string Section = "Nightshift:Api";

    /// <summary>
    /// API keys accepted as <c>Authorization: Bearer &lt;key&gt;</c> on everything but <c>/health</c>.
    /// None: no authentication, allowed only on loopback unless <see cref="AllowAnonymous"/>. Default: none.
    /// </summary>
    public string[] Keys { get; set; } = [];

    /// <summary>Serve without keys on a non-loopback address (behind a gateway that authenticates). Default: false.</summary>
    public bool AllowAnonymous { get; set; }

    /// <summary>
    /// Users by name (<c>Nightshift:Api:Principals:{user}</c>), each with a key of their own: a request with it acts as
    /// that user in that team. A non-admin sees and controls only its team's batches and cannot change pools.
    /// <see cref="Keys"/> stay admin keys. Default: none.
    /// </summary>
    public Dictionary<string, PrincipalOptions> Principals { get; set; } = new(StringComparer.Ordinal);

    /// <summary>Whether any key is configured: then every request but <c>/health</c> must carry one.</summary>
    public bool RequiresKeys => Keys.Any(k => k.Length > 0) || Principals.Count > 0;

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        var seen = new HashSet<string>(Keys.Where(k => k.Length > 0), StringComparer.Ordinal);
        foreach (var (user, principal) in Principals)
        {
            var name = $"{Section}:Principals:{user}";
            if (principal.ResolveKey() is not { Length: > 0 } key)
            {
                yield return new ValidationResult($"{name}:Key: required (or {name}:KeyEnv, naming a variable that is set)", [nameof(Principals)]);
            }
            else if (!seen.Add(key))
            {
                yield return new ValidationResult($"{name}:Key: the same key as another principal or admin key; each key must say who calls", [nameof(Principals)]);
            }

            if (!principal.Admin && string.IsNullOrWhiteSpace(principal.Team))
            {
                yield return new ValidationResult($"{name}:Team: required unless {name}:Admin is true", [nameof(Principals)]);
            }
        }
    }

    /// <summary>Largest JSONL upload, in bytes; a larger one is refused with 413 and nothing is written. Default: 2 GiB.</summary>
    [Range(1024, long.MaxValue)]
    public long MaxUploadBytes { get; set; } = 2L * 1024 * 1024 * 1024;

    /// <summary>Largest JSON submission (<c>{pool, items, options}</c>), which is parsed whole; large batches belong in a JSONL upload. Default: 32 MiB.</summary>
    [Range(1024, int.MaxValue)]
    public int MaxJsonBytes { get; set; } = 32 * 1024 * 1024;
}

/// <summary>One user of the API (<c>Nightshift:Api:Principals:{user}</c>).</summary>
public sealed class PrincipalOptions
{
    /// <summary>The user's key (sent as <c>Authorization: Bearer &lt;key&gt;</c>); never stored or logged.</summary>
    public string? Key { get; set; }

    /// <summary>The environment variable that holds the key, instead of <see cref="Key"/>.</summary>
    public string? KeyEnv { get; set; }

    /// <summary>The user's team: its batches are the ones the user sees. Required unless <see cref="Admin"/>.</summary>
    public string? Team { get; set; }

    /// <summary>Whether the user sees every team's batches and may change pools, as an admin key does. Default: false.</summary>
    public bool Admin { get; set; }

    /// <summary>The key, from <see cref="Key"/> or the variable <see cref="KeyEnv"/> names.</summary>
    public string? ResolveKey() => Key is { Length: > 0 } key ? key : KeyEnv is { Length: > 0 } name ? Environment.GetEnvironmentVariable(name) : null;
}