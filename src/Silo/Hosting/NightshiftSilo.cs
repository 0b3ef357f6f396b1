using System.Net;
using System.Net.Sockets;
using Nightshift.Hosting;
using Nightshift.Storage;
using Orleans.Configuration;

namespace Nightshift.Silo.Hosting;

/// <summary>The one place that turns a host into a Nightshift silo, for both <c>serve</c> and <c>run</c>.</summary>
internal static class NightshiftSilo
{
    /// <summary>Grain state is keyed by service id, so it must stay the same across restarts.</summary>
    public const string ServiceId = "nightshift";

    /// <summary>
    /// A silo on the store <paramref name="store"/> names (a PostgreSQL connection string, or the path of
    /// an SQLite file), else on <c>Nightshift:Store:ConnectionString</c>, else on <c>Nightshift:Store:Path</c>.
    /// On PostgreSQL the silo joins the cluster registered in the same database; on SQLite it is alone.
    /// <paramref name="configureSilo"/> adds what only some hosts have (the dashboard).
    /// </summary>
    public static void Configure(IHostApplicationBuilder builder, SiloOptions endpoints, string? store, Action<ISiloBuilder>? configureSilo = null)
    {
        builder.Configuration.AddInMemoryCollection(NightshiftStoreExtensions.StoreSettings(store));
        var storeOptions = builder.Services.AddNightshiftStore(builder.Configuration);
        var traced = Telemetry.ExportsOtlp(builder.Configuration);
        builder.UseOrleans(silo =>
        {
            if (traced)
            {
                silo.AddActivityPropagation();
            }

            configureSilo?.Invoke(silo);
            silo.AddNightshiftGrains();
            if (!storeOptions.UsesPostgres)
            {
                silo.UseLocalhostClustering(endpoints.SiloPort, endpoints.GatewayPort, serviceId: ServiceId, clusterId: ServiceId);
                return;
            }

            silo.Configure<ClusterOptions>(cluster =>
            {
                cluster.ServiceId = ServiceId;
                cluster.ClusterId = endpoints.ClusterId;
            });
            silo.UseAdoNetClustering(clustering =>
            {
                clustering.Invariant = storeOptions.OrleansInvariant;
                clustering.ConnectionString = storeOptions.OrleansConnectionString;
            });
            silo.ConfigureEndpoints(AdvertisedAddress(endpoints), endpoints.SiloPort, endpoints.GatewayPort, listenOnAnyHostAddress: endpoints.AdvertisedAddress is null);

            // How soon a silo that stopped answering (dead, paused, cut off) is declared dead and its
            // grains move on: Orleans' own ProbeTimeout, NumMissedProbesLimit and the rest, by their names.
            silo.Configure<ClusterMembershipOptions>(builder.Configuration.GetSection("Orleans:Membership"));
        });
    }

    /// <summary>Endpoints on free loopback ports, for a one-shot silo that nobody else joins.</summary>
    public static SiloOptions PrivateEndpoints() => new() { SiloPort = FreePort(), GatewayPort = FreePort(), AdvertisedAddress = IPAddress.Loopback.ToString() };

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static IPAddress AdvertisedAddress(SiloOptions endpoints)
    {
        if (endpoints.AdvertisedAddress is { } configured)
        {
            return IPAddress.TryParse(configured, out var address)
                ? address
                : Dns.GetHostAddresses(configured).First(candidate => candidate.AddressFamily == AddressFamily.InterNetwork);
        }

        return Dns.GetHostAddresses(Dns.GetHostName()).FirstOrDefault(candidate => candidate.AddressFamily == AddressFamily.InterNetwork && !IPAddress.IsLoopback(candidate))
            ?? IPAddress.Loopback;
    }

    /// <summary>The store the configuration names, for messages: the SQLite file's path, or the PostgreSQL host and database.</summary>
    public static string StoreName(IConfiguration configuration)
    {
        var store = configuration.GetSection(ItemStoreOptions.Section).Get<ItemStoreOptions>() ?? new ItemStoreOptions();
        if (store.UsesPostgres)
        {
            var builder = new Npgsql.NpgsqlConnectionStringBuilder(store.ConnectionString);
            return $"PostgreSQL database '{builder.Database}' on {builder.Host}";
        }

        return Path.GetFullPath(store.Path);
    }
}
