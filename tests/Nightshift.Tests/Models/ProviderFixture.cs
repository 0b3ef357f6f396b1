using System.Collections.Concurrent;
using Microsoft.Data.Sqlite;
using Nightshift.MockModel;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Models;

/// <summary>
/// One test cluster and one loopback mock model for the provider tests. The mock answers through
/// <see cref="Respond"/>, which each test sets for its own custom_id prefix, and records when each
/// request arrived; its own per-custom_id counts are what the tests compare with the store's attempts.
/// </summary>
public sealed class ProviderFixture : IAsyncLifetime
{
    /// <summary>The variable the Azure pools name for their key (the mock takes any key).</summary>
    public const string AzureKeyVariable = "NIGHTSHIFT_TEST_AZURE_KEY";

    private NightshiftCluster? _cluster;
    private MockModelServer? _mock;

    public NightshiftCluster Cluster => _cluster ?? throw new InvalidOperationException("The cluster has not started.");

    public MockModelServer Mock => _mock ?? throw new InvalidOperationException("The mock has not started.");

    /// <summary>Every request the mock received, with the time it arrived.</summary>
    public ConcurrentQueue<(MockRequest Request, DateTimeOffset At)> Arrivals { get; } = new();

    /// <summary>The current test's answers; <c>null</c> from it sends the mock's normal completion.</summary>
    public Func<MockRequest, MockResponse?> Respond { get; set; } = static _ => null;

    public async ValueTask InitializeAsync()
    {
        Environment.SetEnvironmentVariable(AzureKeyVariable, "test-key");
        _mock = await MockModelServer.StartAsync(new MockModelOptions
        {
            LatencyMin = TimeSpan.FromMilliseconds(10),
            LatencyMax = TimeSpan.FromMilliseconds(20),
            Respond = request =>
            {
                Arrivals.Enqueue((request, DateTimeOffset.UtcNow));
                return Respond(request);
            },
        }, TestContext.Current.CancellationToken);
        _cluster = await NightshiftCluster.StartAsync();
    }

    /// <summary>A binding to the mock in the URL shape of <paramref name="provider"/> (<c>openai</c> or <c>azure</c>).</summary>
    public ModelBinding Binding(string provider) => provider switch
    {
        OpenAiCompatibleProvider.ProviderName => new ModelBinding { Provider = provider, Endpoint = new Uri(Mock.BaseAddress, "v1").ToString(), Model = "gpt-test" },
        AzureOpenAiProvider.ProviderName => new ModelBinding { Provider = provider, Endpoint = Mock.BaseAddress.ToString(), Model = "dep-test", ApiKeyEnvironmentVariable = AzureKeyVariable },
        _ => throw new ArgumentOutOfRangeException(nameof(provider), provider, "openai or azure"),
    };

    /// <summary>The path each provider's requests must arrive on.</summary>
    public static string PathOf(string provider) =>
        provider == AzureOpenAiProvider.ProviderName ? "/openai/deployments/dep-test/chat/completions" : "/v1/chat/completions";

    /// <summary>Each item's recorded attempts (model errors and 429s), by custom_id, read from the store file.</summary>
    public Task<Dictionary<string, int>> RecordedAttemptsAsync(string batchId) => RecordedAttemptsAsync(Cluster.StorePath, batchId);

    /// <summary>Each item's recorded attempts (model errors and 429s), by custom_id, read from the store file at <paramref name="storePath"/>.</summary>
    public static async Task<Dictionary<string, int>> RecordedAttemptsAsync(string storePath, string batchId)
    {
        await using var connection = new SqliteConnection($"Data Source={storePath}");
        await connection.OpenAsync(TestContext.Current.CancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT custom_id, attempts + rate_limited_attempts FROM ns_items WHERE batch_id = @batch";
        command.Parameters.AddWithValue("@batch", batchId);
        var attempts = new Dictionary<string, int>(StringComparer.Ordinal);
        await using var reader = await command.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        while (await reader.ReadAsync(TestContext.Current.CancellationToken))
        {
            attempts[reader.GetString(0)] = reader.GetInt32(1);
        }

        return attempts;
    }

    /// <summary>
    /// The invariant behind "Nightshift owns retrying": for every item, the HTTP requests the mock
    /// counted equal the attempts Nightshift recorded. A hidden SDK retry would make the mock's count larger.
    /// </summary>
    public async Task AssertEveryRequestIsARecordedAttemptAsync(string batchId, string prefix)
    {
        var recorded = await RecordedAttemptsAsync(batchId);
        var counted = Mock.Stats.Calls.Where(c => c.Key.StartsWith(prefix + "-", StringComparison.Ordinal)).ToDictionary();
        Assert.NotEmpty(recorded);
        Assert.Equal(counted.Values.Sum(), recorded.Values.Sum());
        foreach (var (customId, attempts) in recorded)
        {
            Assert.Equal(counted.GetValueOrDefault(customId), attempts);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }

        if (_mock is not null)
        {
            await _mock.DisposeAsync();
        }
    }
}
