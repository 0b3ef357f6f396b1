using System.Net.Http.Json;
using System.Text.Json;
using System.Text.Json.Serialization;
using Nightshift.MockModel;

namespace Nightshift.Tests.Fixtures;

/// <summary>
/// Real <c>serve</c> processes on a private PostgreSQL server, calling the mock model in a process of its
/// own, which counts the calls, their peak concurrency and which connection each came on: the
/// invariants are read from the mock, never from Nightshift. Everything is stopped on dispose.
/// </summary>
public sealed class ServeCluster : IAsyncDisposable
{
    private static readonly JsonSerializerOptions StatsJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };
    private static readonly JsonSerializerOptions PoolJsonOptions = new() { DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull };

    private readonly TempDirectory _directory = new();
    private PostgresServer? _postgres;
    private MockModelProcess? _mock;
    private SiloCluster? _silos;
    private HttpClient? _mockClient;

    private ServeCluster()
    {
    }

    /// <summary>The PostgreSQL server of this cluster alone (a test may restart it).</summary>
    public PostgresServer Postgres => _postgres!;

    public MockModelProcess Mock => _mock!;

    public SiloCluster Silos => _silos!;

    /// <summary>
    /// Starts the mock with <paramref name="mockArguments"/> and <paramref name="silos"/> members, each with
    /// <paramref name="environment"/> added to its own.
    /// </summary>
    public static async Task<ServeCluster> StartAsync(string[] mockArguments, int silos, IReadOnlyDictionary<string, string>? environment = null)
    {
        var cluster = new ServeCluster();
        try
        {
            cluster._postgres = await PostgresServer.StartPrivateAsync();
            cluster._mock = await MockModelProcess.StartAsync(["--port", "0", .. mockArguments], TestContext.Current.CancellationToken);
            cluster._mockClient = new HttpClient { BaseAddress = cluster._mock.BaseAddress };
            cluster._silos = await SiloCluster.StartAsync(await cluster._postgres.CreateDatabaseAsync(), silos, cluster._directory.Path, environment);
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>The mock's own counters (<c>GET /stats</c>).</summary>
    public async Task<MockModelStats> StatsAsync() =>
        (await _mockClient!.GetFromJsonAsync<MockModelStats>("/stats", StatsJson, TestContext.Current.CancellationToken))!;

    /// <summary>When each call reached the mock, in unix milliseconds, ascending (<c>GET /stats/arrivals</c>).</summary>
    public async Task<long[]> ArrivalsAsync() =>
        (await _mockClient!.GetFromJsonAsync<long[]>("/stats/arrivals", StatsJson, TestContext.Current.CancellationToken))!;

    /// <summary>Clears the mock's counters (<c>POST /stats/reset</c>).</summary>
    public async Task ResetStatsAsync() =>
        (await _mockClient!.PostAsync("/stats/reset", null, TestContext.Current.CancellationToken)).EnsureSuccessStatusCode();

    /// <summary>The body of <c>PUT /v1/pools/{name}</c> for a pool calling the mock.</summary>
    public string PoolJson(int maxRunning, int? leaseSeconds = null) => JsonSerializer.Serialize(new
    {
        provider = "openai",
        endpoint = new Uri(Mock.BaseAddress, "v1").ToString(),
        model = "mock",
        maxRunning,
        leaseSeconds,
    }, PoolJsonOptions);

    public async ValueTask DisposeAsync()
    {
        _silos?.Dispose();
        _mockClient?.Dispose();
        _mock?.Dispose();
        if (_postgres is not null)
        {
            await _postgres.DisposeAsync();
        }

        _directory.Dispose();
    }
}
