using System.Net;
using System.Net.Sockets;
using Nightshift.Hosting;
using Nightshift.Storage.Sqlite;

namespace Nightshift.Silo.Hosting;

/// <summary>The one place that turns a host into a Nightshift silo, for both <c>serve</c> and <c>run</c>.</summary>
internal static class NightshiftSilo
{
    /// <summary>Grain state is keyed by service id, so it must stay the same across restarts.</summary>
    public const string ServiceId = "nightshift";

    /// <summary>Makes <paramref name="builder"/> a silo; <paramref name="configureSilo"/> adds what only some hosts have (the dashboard).</summary>
    public static void Configure(IHostApplicationBuilder builder, SiloOptions endpoints, string? storePath, Action<ISiloBuilder>? configureSilo = null)
    {
        var traced = Telemetry.ExportsOtlp(builder.Configuration);
        builder.UseOrleans(silo =>
        {
            silo.UseLocalhostClustering(endpoints.SiloPort, endpoints.GatewayPort, serviceId: ServiceId, clusterId: ServiceId);
            if (traced)
            {
                silo.AddActivityPropagation();
            }

            configureSilo?.Invoke(silo);
            silo.AddNightshift(store =>
            {
                if (storePath is not null)
                {
                    store.Path = storePath;
                }
            });
        });
    }

    /// <summary>Endpoints on free loopback ports, for a one-shot silo that nobody else joins.</summary>
    public static SiloOptions PrivateEndpoints() => new() { SiloPort = FreePort(), GatewayPort = FreePort() };

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    /// <summary>The store path the configuration names, for messages.</summary>
    public static string StorePath(IConfiguration configuration, string? overridePath) =>
        Path.GetFullPath(overridePath ?? configuration["Nightshift:Store:Path"] ?? new SqliteStoreOptions().Path);
}
