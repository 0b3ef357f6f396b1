using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Api;

/// <summary>
/// A 200,000-line upload to the real <c>serve</c> process: its peak resident memory (VmHWM, read from
/// /proc) must not grow with the upload's size, since the body is streamed into the store.
/// </summary>
public sealed class UploadMemoryTests : IDisposable
{
    private readonly TempDirectory _directory = new();

    [Fact]
    public async Task A200000LineUpload_DoesNotGrowTheSilosMemoryWithItsSize()
    {
        var port = ApiHost.FreePort();
        var environment = new Dictionary<string, string>
        {
            ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{port}",
            ["Nightshift__Silo__SiloPort"] = $"{ApiHost.FreePort()}",
            ["Nightshift__Silo__GatewayPort"] = $"{ApiHost.FreePort()}",
            ["Nightshift__Simulated__LatencyMin"] = "00:00:05",
            ["Nightshift__Simulated__LatencyMax"] = "00:00:05",

            // Workstation GC with a small first generation: the peak then follows live data, not the
            // collector's allocation budgets. The server collector's swing the peak by tens of MB, and
            // so does the workstation one's on a processor with a large L3 cache, which it sizes
            // generation 0 by (105 MB of L3 made a 39 MB upload look like 35 MB of growth).
            ["DOTNET_gcServer"] = "0",
            ["DOTNET_GCgen0size"] = "0x400000",
        };
        using var silo = SiloProcess.Start(_directory.Path, environment, "serve", "--store", Path.Combine(_directory.Path, "upload.db"));
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}"), Timeout = TimeSpan.FromMinutes(5) };
        await SiloProcess.WaitUntilAnsweringAsync(http);
        Assert.Equal(HttpStatusCode.OK, (await http.PutAsJsonAsync("/v1/pools/upload", new { maxRunning = 1 }, Ct)).StatusCode);

        var small = await UploadAsync(http, 20_000);
        var afterSmall = PeakMegabytes(silo.Id);
        var large = await UploadAsync(http, 200_000);
        var afterLarge = PeakMegabytes(silo.Id);

        Assert.Equal((20_000L, 200_000L), (small, large));
        var largeBytes = new FileInfo(Path.Combine(_directory.Path, "200000.jsonl")).Length / (1024.0 * 1024.0);
        Assert.True(afterLarge - afterSmall < largeBytes / 2,
            $"peak memory grew by {afterLarge - afterSmall:0} MB (from {afterSmall:0} MB) for a {largeBytes:0} MB upload");
    }

    public void Dispose() => _directory.Dispose();

    private async Task<long> UploadAsync(HttpClient http, int lines)
    {
        var path = Path.Combine(_directory.Path, $"{lines}.jsonl");
        await using (var writer = new StreamWriter(path))
        {
            for (var i = 0; i < lines; i++)
            {
                await writer.WriteLineAsync(Jsonl.Line($"u-{i}", $"summarise document number {i} of the upload in one sentence"));
            }
        }

        await using var file = File.OpenRead(path);
        var content = new StreamContent(file);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/x-ndjson");
        var response = await http.PostAsync("/v1/batches?pool=upload", content, Ct);
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        return (await response.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("total").GetInt64();
    }

    private static double PeakMegabytes(int pid)
    {
        var line = File.ReadLines($"/proc/{pid}/status").Single(l => l.StartsWith("VmHWM:", StringComparison.Ordinal));
        return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], System.Globalization.CultureInfo.InvariantCulture) / 1024.0;
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
