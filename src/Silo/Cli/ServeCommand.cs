using System.CommandLine;
using Nightshift.Silo.Hosting;

namespace Nightshift.Silo.Cli;

/// <summary><c>serve</c> (also what runs with no arguments): the silo with the HTTP API.</summary>
internal static class ServeCommand
{
    private static readonly Option<string?> Store = new("--store")
    {
        Description = "Path of the SQLite store file (default: ./data/nightshift.db), or a PostgreSQL connection string (\"Host=…;Database=…\") to join the cluster on that database.",
    };

    private static readonly Option<int?> SiloPort = new("--silo-port") { Description = "Port for silo-to-silo traffic (Nightshift:Silo:SiloPort, default 11111)." };

    private static readonly Option<int?> GatewayPort = new("--gateway-port") { Description = "Port on which Orleans clients reach the cluster (Nightshift:Silo:GatewayPort, default 30000)." };

    public static Command Create()
    {
        var command = new Command("serve", "Run a silo that serves the HTTP API (the default with no arguments).") { Store, SiloPort, GatewayPort };
        command.SetAction((parseResult, cancellationToken) => RunAsync(parseResult, command, cancellationToken));
        return command;
    }

    public static async Task<int> RunAsync(ParseResult parseResult, Command command, CancellationToken cancellationToken)
    {
        var own = command == parseResult.CommandResult.Command;
        var store = own ? parseResult.GetValue(Store) : null;
        var ports = new Dictionary<string, string?>();
        if (own && parseResult.GetValue(SiloPort) is { } siloPort)
        {
            ports[$"{SiloOptions.Section}:{nameof(SiloOptions.SiloPort)}"] = $"{siloPort}";
        }

        if (own && parseResult.GetValue(GatewayPort) is { } gatewayPort)
        {
            ports[$"{SiloOptions.Section}:{nameof(SiloOptions.GatewayPort)}"] = $"{gatewayPort}";
        }

        await using var app = ServeHost.BuildSilo(store, configuration => configuration.AddInMemoryCollection(ports));
        await app.StartAsync(cancellationToken);
        await ServeHost.DeclarePoolsAsync(app);
        await app.WaitForShutdownAsync(cancellationToken);
        return 0;
    }
}

/// <summary><c>api</c>: the HTTP API alone, as an Orleans client of the silo(s) on this host.</summary>
internal static class ApiCommand
{
    private static readonly Option<string?> Store = new("--store")
    {
        Description = "Path of the silo's SQLite store file (default: ./data/nightshift.db), or the cluster's PostgreSQL connection string.",
    };

    public static Command Create()
    {
        var command = new Command("api", "Serve the HTTP API without a silo, as an Orleans client of the cluster (gateway: Nightshift:Silo:GatewayPort).") { Store };
        command.SetAction(async (parseResult, cancellationToken) =>
        {
            await using var app = ServeHost.BuildApiOnly(parseResult.GetValue(Store));
            await app.RunAsync(cancellationToken);
            return 0;
        });
        return command;
    }
}
