using System.Net;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Cli;

/// <summary>The long-running silo (<c>serve</c>) as a real process: it answers on loopback and stops cleanly on SIGTERM.</summary>
public sealed class ServeCommandTests : IDisposable
{
    private readonly TempDirectory _directory = new();

    [Fact]
    public async Task Serve_AnswersHealth_AndExitsZeroOnSigterm()
    {
        var http = ApiHost.FreePort();
        var environment = new Dictionary<string, string>
        {
            ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{http}",
            ["Nightshift__Silo__SiloPort"] = $"{ApiHost.FreePort()}",
            ["Nightshift__Silo__GatewayPort"] = $"{ApiHost.FreePort()}",
        };
        using var silo = SiloProcess.Start(_directory.Path, environment, "serve", "--store", Path.Combine(_directory.Path, "serve.db"));
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}") };

        await SiloProcess.WaitUntilAnsweringAsync(client, "/health/live");
        var live = await client.GetAsync("/health/live", Ct);

        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        silo.Terminate();
        Assert.Equal(0, await silo.WaitForExitAsync(TimeSpan.FromSeconds(60)));
    }

    [Fact]
    public async Task ApiProcess_SubmitsToAServeProcess_ThroughItsGateway()
    {
        var gateway = ApiHost.FreePort();
        var siloHttp = ApiHost.FreePort();
        var apiHttp = ApiHost.FreePort();
        var store = Path.Combine(_directory.Path, "shared.db");
        using var silo = SiloProcess.Start(_directory.Path, new Dictionary<string, string>
        {
            ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{siloHttp}",
            ["Nightshift__Silo__SiloPort"] = $"{ApiHost.FreePort()}",
            ["Nightshift__Silo__GatewayPort"] = $"{gateway}",
        }, "serve", "--store", store);
        using var siloClient = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{siloHttp}") };
        await SiloProcess.WaitUntilAnsweringAsync(siloClient);

        using var api = SiloProcess.Start(_directory.Path, new Dictionary<string, string>
        {
            ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{apiHttp}",
            ["Nightshift__Silo__GatewayPort"] = $"{gateway}",
        }, "api", "--store", store);
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{apiHttp}") };
        await SiloProcess.WaitUntilAnsweringAsync(client);

        Assert.Equal(HttpStatusCode.OK, (await client.PutAsync("/v1/pools/p", new StringContent("""{"maxRunning": 4}""", System.Text.Encoding.UTF8, "application/json"), Ct)).StatusCode);
        var created = await client.PostAsync("/v1/batches?pool=p", new StringContent(Jsonl.Lines(40, "api"), System.Text.Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var location = created.Headers.Location!.OriginalString;
        await Eventually.MatchesAsync(() => client.GetStringAsync(location, Ct), batch => batch.Contains("\"state\":\"completed\"", StringComparison.Ordinal),
            batch => $"the batch did not complete: {batch}. API output:\n{api.Output}\nSilo output:\n{silo.Output}", period: TimeSpan.FromMilliseconds(100));

        Assert.Equal(40, (await client.GetStringAsync($"{location}/results", Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries).Length);
    }

    public void Dispose() => _directory.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
