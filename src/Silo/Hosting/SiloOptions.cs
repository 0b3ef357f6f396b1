using System.ComponentModel.DataAnnotations;

namespace Nightshift.Silo.Hosting;

/// <summary>The silo's endpoints and cluster (configuration section <c>Nightshift:Silo</c>).</summary>
public sealed class SiloOptions
{
    public const string Section = "Nightshift:Silo";

    /// <summary>Port for silo-to-silo traffic. Default: 11111.</summary>
    [Range(1, 65535)]
    public int SiloPort { get; set; } = 11111;

    /// <summary>Port on which Orleans clients reach the cluster. Default: 30000.</summary>
    [Range(1, 65535)]
    public int GatewayPort { get; set; } = 30000;

    /// <summary>
    /// On a PostgreSQL store: the address other silos and clients reach this silo at, written to the
    /// membership table. Default: none, which picks this host's first network address.
    /// </summary>
    public string? AdvertisedAddress { get; set; }

    /// <summary>On a PostgreSQL store: the cluster this silo joins; silos with the same id on one database form one cluster. Default: nightshift.</summary>
    [Required]
    public string ClusterId { get; set; } = "nightshift";
}
