using System.Net;
using System.Net.Sockets;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Cli;

/// <summary>The long-running silo (<c>serve</c>) as a real process: it answers on loopback and stops cleanly on SIGTERM.</summary>
public sealed class ServeCommandTests : IDisposable
{
    private readonly TempDirectory _directory = new();

    [Fact]
    public async Task Serve_AnswersHealth_AndExitsZeroOnSigterm()
    {
        var http = FreePort();
        var environment = new Dictionary<string, string>
        {
            ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{http}",
            ["Nightshift__Silo__SiloPort"] = $"{FreePort()}",
            ["Nightshift__Silo__GatewayPort"] = $"{FreePort()}",
        };
        using var silo = SiloProcess.Start(_directory.Path, environment, "serve", "--store", Path.Combine(_directory.Path, "serve.db"));
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}") };

        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        HttpResponseMessage? live = null;
        while (live is null)
        {
            try
            {
                live = await client.GetAsync("/health/live", Ct);
            }
            catch (HttpRequestException) when (DateTime.UtcNow < deadline)
            {
                await Task.Delay(100, Ct);
            }
        }

        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        silo.Terminate();
        Assert.Equal(0, await silo.WaitForExitAsync(TimeSpan.FromSeconds(60)));
    }

    public void Dispose() => _directory.Dispose();

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
