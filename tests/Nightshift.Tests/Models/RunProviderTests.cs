using System.Text.Json;
using Nightshift.MockModel;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Models;

/// <summary>
/// The <c>run</c> command's provider options as a user types them: the real executable in a child
/// process against the loopback mock, which counts the requests and checks the URL shape.
/// </summary>
public sealed class RunProviderTests : IAsyncLifetime
{
    private const string KeyVariable = "NIGHTSHIFT_TEST_PROVIDER_KEY";

    private readonly RunWorkspace _run = new();
    private readonly List<MockRequest> _received = [];
    private MockModelServer? _mock;
    private Func<MockRequest, MockResponse?> _respond = static _ => null;

    private MockModelServer Mock => _mock ?? throw new InvalidOperationException("The mock has not started.");

    public async ValueTask InitializeAsync() => _mock = await MockModelServer.StartAsync(new MockModelOptions
    {
        Respond = request =>
        {
            lock (_received)
            {
                _received.Add(request);
            }

            return _respond(request);
        },
    }, Ct);

    [Fact]
    public async Task Run_WithAzureEndpointAndDeployment_CallsTheDeploymentsUrl_OncePerItem()
    {
        var input = Jsonl.Lines(40, "az");
        await File.WriteAllTextAsync(_run.Input, input, Ct);

        using var run = _run.Start(new Dictionary<string, string> { [KeyVariable] = "secret-key" },
            "--azure-endpoint", Mock.BaseAddress.ToString(), "--deployment", "my-deployment", "--api-key-env", KeyVariable, "--max-running", "8");
        Assert.Equal(0, await run.WaitForExitAsync(TimeSpan.FromMinutes(2)));

        var lines = await File.ReadAllLinesAsync(_run.Output, Ct);
        var bodies = input.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(Jsonl.Body).ToList();
        Assert.Equal(40, lines.Length);
        Assert.All(_received, request => Assert.Equal("/openai/deployments/my-deployment/chat/completions", request.Path));
        Assert.Equal(40, Mock.Stats.Total);
        Assert.All(Mock.Stats.Calls.Values, calls => Assert.Equal(1, calls));
        Assert.DoesNotContain("secret-key", run.Output, StringComparison.Ordinal);
        var first = JsonDocument.Parse(lines[0]).RootElement.GetProperty("response").GetProperty("body");
        Assert.StartsWith("mock-", first.GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
        Assert.Equal("my-deployment", first.GetProperty("model").GetString());
    }

    [Fact]
    public async Task Run_StopsWithExitThree_SayingWhy_WhenTheProviderRefusesTheKey()
    {
        _respond = _ => new MockResponse(401, """{"error":{"message":"Incorrect API key provided: wr***ey.","type":"invalid_request_error","code":"invalid_api_key"}}""");
        await File.WriteAllTextAsync(_run.Input, Jsonl.Lines(200, "denied"), Ct);

        using var run = _run.Start(new Dictionary<string, string> { [KeyVariable] = "wrong-key" },
            "--endpoint", new Uri(Mock.BaseAddress, "v1").ToString(), "--model", "gpt-test", "--api-key-env", KeyVariable, "--max-running", "4");
        Assert.Equal(3, await run.WaitForExitAsync(TimeSpan.FromMinutes(1)));

        Assert.Contains("paused", run.Output, StringComparison.Ordinal);
        Assert.Contains("HTTP 401: Incorrect API key provided", run.Output, StringComparison.Ordinal);
        Assert.InRange(Mock.Stats.Total, 1, 4);
        Assert.All(_received, request => Assert.Equal("/v1/chat/completions", request.Path));
    }

    public async ValueTask DisposeAsync()
    {
        if (_mock is not null)
        {
            await _mock.DisposeAsync();
        }

        _run.Dispose();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
