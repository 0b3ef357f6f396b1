using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Nightshift.Api;
using Nightshift.Silo.Hosting;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Api;

public sealed class KeyedApiHost : ApiHost
{
    public const string Key = "test-key-7f3a";

    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Nightshift:Api:Keys:0"] = "another-key",
        ["Nightshift:Api:Keys:1"] = Key,
    };
}

public sealed class ApiSecurityTests(KeyedApiHost host) : IClassFixture<KeyedApiHost>
{
    [Fact]
    public async Task WithKeys_EveryEndpointButHealth_WantsAValidBearerKey()
    {
        var anonymous = await host.Http.GetAsync("/v1/pools", Ct);
        Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
        Assert.Equal("Bearer", anonymous.Headers.WwwAuthenticate.Single().Scheme);
        Assert.Contains("Nightshift:Api:Keys", (await anonymous.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("detail").GetString());
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(HttpMethod.Get, "/v1/pools", "wrong-key")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await SendAsync(HttpMethod.Post, "/v1/batches?pool=x", "wrong-key")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await host.Http.GetAsync("/openapi/v1.json", Ct)).StatusCode);

        Assert.Equal(HttpStatusCode.OK, (await SendAsync(HttpMethod.Get, "/v1/pools", KeyedApiHost.Key)).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await host.Http.GetAsync("/health/live", Ct)).StatusCode);
    }

    [Theory]
    [InlineData("http://0.0.0.0:8080", false, false, true)]
    [InlineData("http://*:80", false, false, true)]
    [InlineData("http://+:80", false, false, true)]
    [InlineData("http://192.168.1.20:80", false, false, true)]
    [InlineData("http://127.0.0.1:8080;http://[::1]:8080", false, false, false)]
    [InlineData("http://localhost:5000", false, false, false)]
    [InlineData("http://0.0.0.0:8080", true, false, false)]
    [InlineData("http://0.0.0.0:8080", false, true, false)]
    public void NonLoopbackWithoutKeys_IsRefused_UnlessAnonymousIsAsked(string urls, bool keys, bool allowAnonymous, bool refused)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["urls"] = urls }).Build();
        var options = new ApiOptions { Keys = keys ? ["k"] : [], AllowAnonymous = allowAnonymous };

        var failure = Record.Exception(() => NightshiftApi.EnsureSafeToListen(configuration, options));

        Assert.Equal(refused, failure is OptionsValidationException);
        if (refused)
        {
            Assert.Contains("Nightshift:Api:AllowAnonymous", failure!.Message);
        }
    }

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, string key)
    {
        using var request = new HttpRequestMessage(method, path);
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return await host.Http.SendAsync(request, Ct);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}

/// <summary>The API in its own host, an Orleans client of the silo's gateway, sharing the store.</summary>
public sealed class ApiOnlyProcessTests(ApiHost silo) : IClassFixture<ApiHost>
{
    [Fact]
    public async Task ApiOnlyHost_DrivesTheSilo_ThroughItsGateway()
    {
        var settings = new Dictionary<string, string?>
        {
            ["urls"] = "http://127.0.0.1:0",
            ["Nightshift:Silo:GatewayPort"] = $"{silo.GatewayPort}",
            ["Logging:LogLevel:Default"] = "Warning",
        };
        await using var api = ServeHost.BuildApiOnly(silo.StorePath, configuration => configuration.AddInMemoryCollection(settings));
        await api.StartAsync(Ct);
        using var http = new HttpClient { BaseAddress = new Uri(api.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()) };

        Assert.Equal(HttpStatusCode.OK, (await http.PutAsJsonAsync("/v1/pools/remote", new { maxRunning = 4 }, Ct)).StatusCode);
        var created = await http.PostAsync("/v1/batches?pool=remote", new StringContent(Jsonl.Lines(50, "remote"), Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var id = (await created.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;

        var batch = await silo.WaitUntilFinishedAsync(id, TimeSpan.FromMinutes(1));
        Assert.Equal(50, batch.GetProperty("counts").GetProperty("succeeded").GetInt64());
        var results = (await http.GetStringAsync($"/v1/batches/{id}/results", Ct)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(50, results.Length);
        Assert.Equal("ready", (await http.GetFromJsonAsync<JsonElement>("/health/ready", Ct)).GetProperty("status").GetString());
        await api.StopAsync(Ct);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
