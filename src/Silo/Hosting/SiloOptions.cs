using System.ComponentModel.DataAnnotations;

namespace Nightshift.Silo.Hosting;

/// <summary>The silo's endpoints (configuration section <c>Nightshift:Silo</c>).</summary>
public sealed class SiloOptions
{
    public const string Section = "Nightshift:Silo";

    /// <summary>Port for silo-to-silo traffic. Default: 11111.</summary>
    [Range(1, 65535)]
    public int SiloPort { get; set; } = 11111;

    /// <summary>Port on which Orleans clients reach the cluster. Default: 30000.</summary>
    [Range(1, 65535)]
    public int GatewayPort { get; set; } = 30000;
}
