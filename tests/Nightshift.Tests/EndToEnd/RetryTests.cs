using Microsoft.Data.Sqlite;
using Nightshift.Batches;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Storage;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.EndToEnd;

public sealed class FlakyModelCluster : ClusterFixture
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["Nightshift:Simulated:LatencyMin"] = "00:00:00.002",
        ["Nightshift:Simulated:LatencyMax"] = "00:00:00.010",
        ["Nightshift:Simulated:ErrorRate"] = "0.2",
        ["Nightshift:Simulated:RateLimitRate"] = "0.05",
        ["Nightshift:Simulated:RetryAfter"] = "00:00:00.050",
    };
}

/// <summary>Retries through the whole grain path, against a model that fails 20% of calls with 500 and 5% with 429.</summary>
public sealed class RetryTests(FlakyModelCluster fixture) : IClassFixture<FlakyModelCluster>
{
    private static readonly BatchOptions FastRetries = new()
    {
        MaxAttempts = 12,
        MaxRateLimitedAttempts = 12,
        BaseDelay = TimeSpan.FromMilliseconds(5),
        MaxDelay = TimeSpan.FromMilliseconds(40),
    };

    private NightshiftCluster Cluster => fixture.Cluster;

    [Fact]
    public async Task FlakyModel_EveryItemSucceedsOnce_AndEveryCallIsARecordedAttempt()
    {
        await Cluster.Grains.GetGrain<IPoolGrain>("flaky").Configure(new PoolConfig
        {
            MaxRunning = 8,
            DefaultCooldown = TimeSpan.FromMilliseconds(50),
            SlowStart = TimeSpan.FromMilliseconds(200),
        });
        var callsBefore = Cluster.Model.Calls;

        var result = await Cluster.Submitter.SubmitAsync("flaky-400", "flaky", FastRetries, Jsonl.Stream(Jsonl.Lines(400, "flaky")), Ct);
        Assert.True(result.Accepted, result.Reason);
        var status = await Cluster.Grains.GetGrain<IBatchGrain>("flaky-400").WaitUntilFinishedAsync(TimeSpan.FromMinutes(2), Cluster.Store);

        Assert.Equal((BatchState.Completed, 400L, 0L), (status.State, status.Succeeded, status.Failed));
        var (attempts, rateLimited) = await AttemptsAsync("flaky-400");
        Assert.Equal(Cluster.Model.Calls - callsBefore, attempts + rateLimited);
        Assert.True(attempts > 400, "some calls failed and were retried");
        Assert.True(rateLimited > 0, "some calls were rate limited");
        Assert.True((await Cluster.Grains.GetGrain<IPoolGrain>("flaky").GetSnapshot()).RateLimited > 0);
    }

    [Fact]
    public async Task ExhaustedAttempts_FailTheItem_WithTheReason()
    {
        await Cluster.CreatePoolAsync("strict", maxRunning: 8);
        var options = FastRetries with { MaxAttempts = 1, MaxRateLimitedAttempts = 1 };

        var result = await Cluster.Submitter.SubmitAsync("strict-200", "strict", options, Jsonl.Stream(Jsonl.Lines(200, "strict")), Ct);
        Assert.True(result.Accepted, result.Reason);
        var status = await Cluster.Grains.GetGrain<IBatchGrain>("strict-200").WaitUntilFinishedAsync(TimeSpan.FromMinutes(1), Cluster.Store);

        Assert.Equal(200, status.Succeeded + status.Failed);
        Assert.InRange(status.Failed, 20, 100);
        var failures = new List<ItemResult>();
        await foreach (var item in Cluster.Store.ReadResultsAsync("strict-200", Ct))
        {
            if (item.State == ItemState.Failed)
            {
                failures.Add(item);
            }
        }

        Assert.Equal(status.Failed, failures.Count);
        Assert.All(failures, f => Assert.Matches("gave up after 1 attempts|rate limited \\(429\\) on 1 attempts", f.Error));
        Assert.All(failures, f => Assert.Contains(f.StatusCode, new int?[] { 429, 500 }));
    }

    [Fact]
    public async Task UnusableModel_FailsEveryItemAtOnce_SayingWhy()
    {
        await Cluster.Grains.GetGrain<IPoolGrain>("keyless").Configure(new PoolConfig
        {
            MaxRunning = 4,
            Model = new ModelBinding { Provider = OpenAiCompatibleProvider.ProviderName, Endpoint = "http://127.0.0.1:9/v1", Model = "m", ApiKeyEnvironmentVariable = "NIGHTSHIFT_TEST_UNSET_KEY" },
        });

        var result = await Cluster.Submitter.SubmitAsync("keyless-20", "keyless", FastRetries, Jsonl.Stream(Jsonl.Lines(20, "keyless")), Ct);
        Assert.True(result.Accepted, result.Reason);
        var status = await Cluster.Grains.GetGrain<IBatchGrain>("keyless-20").WaitUntilFinishedAsync(TimeSpan.FromSeconds(30), Cluster.Store);

        Assert.Equal((BatchState.Completed, 0L, 20L), (status.State, status.Succeeded, status.Failed));
        await foreach (var item in Cluster.Store.ReadResultsAsync("keyless-20", Ct))
        {
            Assert.Contains("'NIGHTSHIFT_TEST_UNSET_KEY'", item.Error);
        }

        var (attempts, _) = await AttemptsAsync("keyless-20");
        Assert.Equal(20, attempts);
    }

    private async Task<(long Attempts, long RateLimited)> AttemptsAsync(string batchId)
    {
        await using var connection = new SqliteConnection($"Data Source={Cluster.StorePath}");
        await connection.OpenAsync(Ct);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT SUM(attempts), SUM(rate_limited_attempts) FROM ns_items WHERE batch_id = @batch";
        command.Parameters.AddWithValue("@batch", batchId);
        await using var reader = await command.ExecuteReaderAsync(Ct);
        await reader.ReadAsync(Ct);
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
