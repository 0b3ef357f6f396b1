using Microsoft.Data.Sqlite;
using Nightshift.Batches;
using Nightshift.Tests.EndToEnd;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Batches;

/// <summary>A running batch holds a durable reminder (in the SQLite file, through Orleans' ADO.NET reminder provider) until it ends.</summary>
public sealed class BatchReminderTests(SteadyModelCluster fixture) : IClassFixture<SteadyModelCluster>
{
    private NightshiftCluster Cluster => fixture.Cluster;

    [Fact]
    public async Task RunningBatch_HoldsAResumeReminder_ThatIsRemovedWhenItEnds()
    {
        await Cluster.CreatePoolAsync("reminded", maxRunning: 2);
        var batch = Cluster.Grains.GetGrain<IBatchGrain>("reminded-1");
        Assert.True((await Cluster.Submitter.SubmitAsync("reminded-1", "reminded", new BatchOptions(), Jsonl.Stream(Jsonl.Lines(400)), Ct)).Accepted);

        Assert.Equal(["resume"], await RemindersAsync("reminded-1"));

        await batch.Cancel();
        await batch.WaitUntilFinishedAsync(TimeSpan.FromSeconds(10));
        Assert.Empty(await RemindersAsync("reminded-1"));
    }

    private async Task<List<string>> RemindersAsync(string batchId)
    {
        await using var connection = new SqliteConnection($"Data Source={Cluster.StorePath}");
        await connection.OpenAsync(Ct);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT ReminderName FROM OrleansRemindersTable WHERE GrainId LIKE '%/' || @batch";
        command.Parameters.AddWithValue("@batch", batchId);
        var names = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(Ct);
        while (await reader.ReadAsync(Ct))
        {
            names.Add(reader.GetString(0));
        }

        return names;
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
