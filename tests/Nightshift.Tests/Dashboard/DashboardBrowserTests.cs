using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Microsoft.Playwright;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Dashboard;

/// <summary>A silo with API keys whose simulated calls take 100–200 ms, so a batch runs long enough to watch.</summary>
public sealed class DashboardHost : ApiHost
{
    public const string Key = "dashboard-test-key";

    public const int Cap = 3;

    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Nightshift:Api:Keys:0"] = Key,
        ["Nightshift:Simulated:LatencyMin"] = "00:00:00.100",
        ["Nightshift:Simulated:LatencyMax"] = "00:00:00.200",
        ["Nightshift:Pools:watched:MaxRunning"] = $"{Cap}",
        ["Nightshift:Pools:watched:Limits:Teams:research:MaxRunning"] = "2",
    };
}

/// <summary>Both dashboards in a real headless Chromium, against a real silo running a real batch.</summary>
public sealed class DashboardBrowserTests(DashboardHost host) : IClassFixture<DashboardHost>, IAsyncLifetime
{
    private readonly Browser _browser = new();
    private readonly List<string> _consoleErrors = [];

    public ValueTask InitializeAsync() => _browser.InitializeAsync();

    public ValueTask DisposeAsync() => _browser.DisposeAsync();

    [Fact]
    public async Task NightshiftDashboard_ShowsTheBatchAdvance_RunningWithinItsCap_AndPausesIt()
    {
        var batchId = await SubmitAsync(200);
        var page = await OpenAsync(1280, 800, "/dashboard");
        var card = page.Locator($"[data-batch-id='{batchId}']");
        await Assertions.Expect(card).ToBeVisibleAsync(new() { Timeout = 10_000 });

        // Watch the page, not the API: the progress it shows advances and the pool it shows never runs past its cap.
        var pool = page.Locator("[data-pool='watched']");
        var firstDone = await DoneAsync(card);
        var (lastDone, maxRunning) = (firstDone, 0);
        for (var i = 0; i < 40 && (lastDone <= firstDone || maxRunning == 0); i++)
        {
            await Task.Delay(250, Ct);
            var running = int.Parse(await pool.GetAttributeAsync("data-running") ?? "-1");
            Assert.InRange(running, 0, int.Parse(await pool.GetAttributeAsync("data-cap") ?? "0"));
            maxRunning = Math.Max(maxRunning, running);
            lastDone = await DoneAsync(card);
        }

        Assert.True(lastDone > firstDone, $"the page's progress stayed at {firstDone}");
        Assert.InRange(maxRunning, 1, DashboardHost.Cap);
        Assert.Equal($"{DashboardHost.Cap}", await pool.GetAttributeAsync("data-cap"));
        // The pool's stack of limits shows with what runs under each (no batch here has a team).
        await Assertions.Expect(pool.Locator(".limits")).ToContainTextAsync("team research: 0 / 2 running");

        // The simulated model cuts no call off: nothing may have been billed without an answer.
        await Assertions.Expect(card.Locator(".maybe-billed")).ToContainTextAsync("0 calls cut off");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Browser.ArtifactPath("dashboard.png"), FullPage = true });

        await card.Locator("button[data-action='pause']").ClickAsync();
        var state = await WaitForStateAsync(batchId, "paused");
        Assert.Equal("paused", state);
        await Assertions.Expect(card.Locator("button[data-action='resume']")).ToBeVisibleAsync();

        Assert.Empty(_consoleErrors);
        await SendAsync(HttpMethod.Post, $"/v1/batches/{batchId}/cancel");
    }

    [Fact]
    public async Task NightshiftDashboard_FitsANarrowScreen_WithoutConsoleErrors()
    {
        await SubmitAsync(20);
        var page = await OpenAsync(390, 844, "/dashboard");
        await Assertions.Expect(page.Locator("[data-pool='watched']")).ToBeVisibleAsync(new() { Timeout = 10_000 });
        await Assertions.Expect(page.Locator("#status")).ToContainTextAsync("live");
        var overflow = await page.EvaluateAsync<int>("document.documentElement.scrollWidth - window.innerWidth");
        Assert.True(overflow <= 0, $"the page is {overflow} px wider than a 390 px screen");
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Browser.ArtifactPath("dashboard-narrow.png"), FullPage = true });
        Assert.Empty(_consoleErrors);
    }

    [Fact]
    public async Task OrleansDashboard_LoadsBehindTheSameKey_WithoutConsoleErrors()
    {
        var page = await OpenAsync(1280, 800, "/orleans/");
        await page.WaitForLoadStateAsync(LoadState.NetworkIdle);
        await Task.Delay(2000, Ct);
        Assert.Contains("Orleans", await page.TitleAsync());
        Assert.Contains("Silo", await page.Locator("body").InnerTextAsync());
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Browser.ArtifactPath("orleans-dashboard.png") });
        Assert.Empty(_consoleErrors);
    }

    [Fact]
    public async Task Dashboards_WithoutTheKey_AreRefused()
    {
        var context = await _browser.Chromium.NewContextAsync();
        var page = await context.NewPageAsync();
        foreach (var path in new[] { "/dashboard", "/orleans/", "/metrics", "/v1/events" })
        {
            var response = await page.GotoAsync(new Uri(host.BaseAddress, path).ToString());
            Assert.Equal(401, response!.Status);
        }

        var wrong = await page.GotoAsync(new Uri(host.BaseAddress, "/dashboard?key=not-the-key").ToString());
        Assert.Equal(401, wrong!.Status);
    }

    /// <summary>Opens <paramref name="path"/> the way the README says: once with <c>?key=</c>, which trades the key for a cookie.</summary>
    private async Task<IPage> OpenAsync(int width, int height, string path)
    {
        var context = await _browser.Chromium.NewContextAsync(new BrowserNewContextOptions { ViewportSize = new ViewportSize { Width = width, Height = height } });
        var page = await context.NewPageAsync();
        page.Console += (_, message) =>
        {
            if (message.Type == "error")
            {
                _consoleErrors.Add($"{message.Text} ({message.Location})");
            }
        };
        page.PageError += (_, error) => _consoleErrors.Add(error);
        var response = await page.GotoAsync(new Uri(host.BaseAddress, $"{path}?key={DashboardHost.Key}").ToString());
        Assert.Equal(200, response!.Status);
        Assert.DoesNotContain("key=", page.Url, StringComparison.Ordinal);
        return page;
    }

    private static async Task<long> DoneAsync(ILocator card) => long.Parse(await card.GetAttributeAsync("data-done") ?? "0");

    private async Task<string> SubmitAsync(int items)
    {
        using var content = new StringContent(Jsonl.Lines(items, "dash"), Encoding.UTF8, "application/x-ndjson");
        var response = await SendAsync(HttpMethod.Post, "/v1/batches?pool=watched", content);
        response.EnsureSuccessStatusCode();
        return (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;
    }

    private Task<string?> WaitForStateAsync(string batchId, string wanted) =>
        Eventually.MatchesAsync(async () =>
        {
            var batch = await (await SendAsync(HttpMethod.Get, $"/v1/batches/{batchId}")).Content.ReadFromJsonAsync<JsonElement>(Ct);
            return batch.GetProperty("state").GetString();
        }, state => state == wanted, state => $"batch {batchId} is {state}, not {wanted}", TimeSpan.FromSeconds(3), TimeSpan.FromMilliseconds(100));

    private async Task<HttpResponseMessage> SendAsync(HttpMethod method, string path, HttpContent? content = null)
    {
        using var request = new HttpRequestMessage(method, path) { Content = content };
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", DashboardHost.Key);
        return await host.Http.SendAsync(request, Ct);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
