using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace Nightshift.MockModel;

/// <summary>
/// An OpenAI-compatible model provider on 127.0.0.1 that counts every call itself, so tests assert
/// the global cap and exactly-once calls from outside the system under test, and the counts survive
/// the death of the process that made the calls. With rate limits and faults configured it plays a
/// realistic provider to benchmark the rate control against: token buckets that answer 429 with
/// OpenAI's <c>x-ratelimit-*</c> headers, and seeded random 429s, 500s, 503s, truncated bodies and hangs.
/// </summary>
public sealed class MockModelServer : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly CallCounter _counter;
    private int _disposed;

    private MockModelServer(WebApplication app, CallCounter counter, MockModelOptions options, Uri baseAddress)
    {
        _app = app;
        _counter = counter;
        Options = options;
        BaseAddress = baseAddress;
    }

    /// <summary>Where the server listens, e.g. <c>http://127.0.0.1:41234/</c>.</summary>
    public Uri BaseAddress { get; }

    /// <summary>The options it was started with; <see cref="MockModelOptions.Respond"/> may be changed while it runs.</summary>
    public MockModelOptions Options { get; }

    /// <summary>A snapshot of the counts since start or the last <see cref="Reset"/>.</summary>
    public MockModelStats Stats => _counter.Snapshot();

    public static async Task<MockModelServer> StartAsync(MockModelOptions options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();

        // Loading the vocabulary takes about a second; it overlaps the start and the client's own, and
        // a request that comes sooner waits for it (a failure to load surfaces there too).
        _ = Task.Run(CompletionRequest.LoadTokenizer, CancellationToken.None);

        var builder = WebApplication.CreateSlimBuilder();

        // Configured by MockModelOptions alone: tests start it from folders that hold other apps'
        // appsettings.json, and its logs must not land on the stdout line a parent process reads.
        builder.Configuration.Sources.Clear();
        builder.Logging.ClearProviders();
        builder.Logging.AddConsole(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.Services.AddSingleton<IHostLifetime, EmbeddedHostLifetime>();

        // A request held by a long fault delay must not keep DisposeAsync waiting for the default 30 s.
        builder.Services.Configure<HostOptions>(host => host.ShutdownTimeout = TimeSpan.FromSeconds(2));

        var app = builder.Build();
        app.Urls.Add($"http://127.0.0.1:{options.Port}");
        var counter = new CallCounter(options.TimeProvider);
        app.MapMockModelApi(options, counter);
        try
        {
            await app.StartAsync(cancellationToken);
        }
        catch
        {
            await app.DisposeAsync();
            throw;
        }

        // After start, Kestrel reports the port it really bound (the free one when Port is 0).
        return new MockModelServer(app, counter, options, new Uri(app.Urls.Single() + "/"));
    }

    /// <summary>The assistant content the mock answers to <paramref name="body"/>: the same body always gets the same content.</summary>
    public static string ExpectedContent(string body) =>
        "mock-" + Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(body)).AsSpan(0, 8));

    /// <summary>What a model of <see cref="MockModelOptions.JsonModels"/> answers instead: <c>{"answer": "<see cref="ExpectedContent"/>"}</c>.</summary>
    public static string ExpectedJsonContent(string body) => JsonSerializer.Serialize(new { answer = ExpectedContent(body) });

    /// <summary>Clears the counts, the success times and the peak (to the requests still in flight), as <c>POST /stats/reset</c> does; the rate-limit buckets keep their levels.</summary>
    public void Reset() => _counter.Reset();

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 1)
        {
            return;
        }

        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    /// <summary>
    /// Leaves SIGINT and SIGTERM to the process: the server is embedded in test runners, whose own
    /// shutdown the default console lifetime would intercept.
    /// </summary>
    private sealed class EmbeddedHostLifetime : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
