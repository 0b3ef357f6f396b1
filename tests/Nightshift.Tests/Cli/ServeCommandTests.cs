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

    [Fact]
    public async Task ApiProcess_SubmitsToAServeProcess_ThroughItsGateway()
    {
        var gateway = FreePort();
        var siloHttp = FreePort();
        var apiHttp = FreePort();
        var store = Path.Combine(_directory.Path, "shared.db");
        using var silo = SiloProcess.Start(_directory.Path, new Dictionary<string, string>
        {
            ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{siloHttp}",
            ["Nightshift__Silo__SiloPort"] = $"{FreePort()}",
            ["Nightshift__Silo__GatewayPort"] = $"{gateway}",
        }, "serve", "--store", store);
        using var siloClient = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{siloHttp}") };
        await WaitForLiveAsync(siloClient);

        using var api = SiloProcess.Start(_directory.Path, new Dictionary<string, string>
        {
            ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{apiHttp}",
            ["Nightshift__Silo__GatewayPort"] = $"{gateway}",
        }, "api", "--store", store);
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiHttp}") };
        await WaitForLiveAsync(client);

        Assert.Equal(HttpStatusCode.OK, (await client.PutAsync("/v1/pools/p", new StringContent("""{"maxRunning": 4}""", System.Text.Encoding.UTF8, "application/json"), Ct)).StatusCode);
        var created = await client.PostAsync("/v1/batches?pool=p", new StringContent(Jsonl.Lines(40, "api"), System.Text.Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var location = created.Headers.Location!.OriginalString;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (!(await client.GetStringAsync(location, Ct)).Contains("\"state\":\"completed\"", StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, $"the batch did not complete. API output:\n{api.Output}\nSilo output:\n{silo.Output}");
            await Task.Delay(100, Ct);
        }

        Assert.Equal(40, (await client.GetStringAsync($"{location}/results", Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    public void Dispose() => _directory.Dispose();

    private static async Task WaitForLiveAsync(HttpClient client)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(60);
        while (true)
        {
            try
            {
                if ((await client.GetAsync("/health/ready", Ct)).IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException) when (DateTime.UtcNow < deadline)
            {
            }

            Assert.True(DateTime.UtcNow < deadline, "the process did not become ready within a minute");
            await Task.Delay(100, Ct);
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
