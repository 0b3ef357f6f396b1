using System.CommandLine;
using Nightshift.Api;
using Nightshift.Silo.Hosting;

namespace Nightshift.Silo.Cli;

/// <summary><c>serve</c> (also what runs with no arguments): the silo with the HTTP API.</summary>
internal static class ServeCommand
{
    private static readonly Option<string?> Store = new("--store") { Description = "Path of the SQLite store file (default: ./data/nightshift.db)." };

    public static Command Create()
    {
        var command = new Command("serve", "Run a silo that serves the HTTP API (the default with no arguments).") { Store };
        command.SetAction((parseResult, cancellationToken) => RunAsync(parseResult, command, cancellationToken));
        return command;
    }

    public static async Task<int> RunAsync(ParseResult parseResult, Command command, CancellationToken cancellationToken)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        builder.Services.AddOptions<SiloOptions>().BindConfiguration(SiloOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        var endpoints = builder.Configuration.GetSection(SiloOptions.Section).Get<SiloOptions>() ?? new SiloOptions();
        var store = command == parseResult.CommandResult.Command ? parseResult.GetValue(Store) : null;
        NightshiftSilo.Configure(builder, endpoints, store);
        await using var app = builder.Build();
        app.MapNightshiftApi();
        await app.RunAsync(cancellationToken);
        return 0;
    }
}
