using System.Net;
using System.Net.Http.Json;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Nightshift.Silo.Hosting;
using Nightshift.Storage;

namespace Nightshift.Tests.Fixtures;

/// <summary>
/// The silo as <c>serve</c> builds it, with its HTTP API on Kestrel at 127.0.0.1 (a free port) and a
/// real SQLite file, driven over real HTTP. Extra settings come from a subclass.
/// </summary>
public class ApiHost : IAsyncLifetime
{
    private readonly TempDirectory _directory = new();
    private WebApplication? _app;

    public HttpClient Http { get; private set; } = null!;

    public string StorePath => Path.Combine(_directory.Path, "api.db");

    public int GatewayPort { get; } = FreePort();

    public IItemStore Store => App.Services.GetRequiredService<IItemStore>();

    public Uri BaseAddress { get; private set; } = null!;

    protected WebApplication App => _app ?? throw new InvalidOperationException("The host has not started.");

    protected virtual IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>();

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public async ValueTask InitializeAsync()
    {
        var settings = new Dictionary<string, string?>
        {
            ["urls"] = "http://127.0.0.1:0",
            ["Nightshift:Silo:SiloPort"] = $"{FreePort()}",
            ["Nightshift:Silo:GatewayPort"] = $"{GatewayPort}",
            ["Nightshift:Simulated:LatencyMin"] = "00:00:00.005",
            ["Nightshift:Simulated:LatencyMax"] = "00:00:00.015",
            ["Logging:LogLevel:Default"] = "Warning",
        };
        foreach (var (key, value) in Settings)
        {
            settings[key] = value;
        }

        _app = ServeHost.BuildSilo(StorePath, configuration => configuration.AddInMemoryCollection(settings));
        await _app.StartAsync();
        await ServeHost.DeclarePoolsAsync(_app);
        BaseAddress = new Uri(_app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First());
        Http = new HttpClient { BaseAddress = BaseAddress };
    }

    public async ValueTask DisposeAsync()
    {
        Http?.Dispose();
        if (_app is not null)
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }

        _directory.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>The batch's result lines (<c>GET /v1/batches/{id}/results</c>), parsed.</summary>
    public async Task<List<JsonElement>> ResultsAsync(string batchId) =>
        [.. (await Http.GetStringAsync($"/v1/batches/{batchId}/results", TestContext.Current.CancellationToken))
            .Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(line => JsonDocument.Parse(line).RootElement)];

    /// <summary>Polls <c>GET /v1/batches/{id}</c> until the batch is completed or cancelled.</summary>
    public Task<JsonElement> WaitUntilFinishedAsync(string batchId, TimeSpan timeout) =>
        Eventually.MatchesAsync(() => Http.GetFromJsonAsync<JsonElement>($"/v1/batches/{batchId}", TestContext.Current.CancellationToken),
            batch => batch.GetProperty("state").GetString() is "completed"
                || (batch.GetProperty("state").GetString() is "cancelled" && batch.GetProperty("counts").GetProperty("running").GetInt64() == 0),
            batch => $"batch {batchId} not finished: {batch}", timeout, TimeSpan.FromMilliseconds(50));
}
