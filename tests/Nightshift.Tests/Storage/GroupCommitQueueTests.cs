using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Nightshift.Storage;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Storage;

/// <summary>The group-commit queue on a real SQLite file: what a cancelled token does to a write.</summary>
public sealed class GroupCommitQueueTests : IDisposable
{
    private readonly TempDirectory _directory = new();

    [Fact]
    public async Task AWriteCancelledWhileItWaits_IsWithdrawn_NeverRuns_AndTheOthersCommit()
    {
        await using var queue = Queue();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var holding = queue.RunAsync(async group =>
        {
            started.TrySetResult();
            await gate.Task;
            return await Execute(group, "CREATE TABLE IF NOT EXISTS t (v INTEGER);");
        }, Ct);

        // The group is running: what is queued from here waits for the next one.
        await started.Task.WaitAsync(TimeSpan.FromSeconds(30), Ct);
        using var shutdown = new CancellationTokenSource();
        var ranWithdrawn = false;
        var withdrawn = queue.RunAsync(group =>
        {
            ranWithdrawn = true;
            return Execute(group, "INSERT INTO t (v) VALUES (1);");
        }, shutdown.Token);
        var kept = queue.RunAsync(group => Execute(group, "INSERT INTO t (v) VALUES (2);"), Ct);

        await shutdown.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => withdrawn.WaitAsync(TimeSpan.FromSeconds(30), Ct));
        gate.SetResult();
        await holding;
        Assert.Equal(1, await kept);

        Assert.False(ranWithdrawn);
        Assert.Equal(2L, await queue.RunAsync(async group => (long)(await group.Command("SELECT SUM(v) FROM t;").ExecuteScalarAsync(Ct))!, Ct));
    }

    [Fact]
    public async Task AWriteAlreadyInAGroup_CommitsWhateverItsTokenSays()
    {
        await using var queue = Queue();
        await queue.RunAsync(group => Execute(group, "CREATE TABLE t (v INTEGER);"), Ct);
        using var shutdown = new CancellationTokenSource();
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var write = queue.RunAsync(async group =>
        {
            started.TrySetResult();
            await gate.Task;
            return await Execute(group, "INSERT INTO t (v) VALUES (5);");
        }, shutdown.Token);

        await started.Task;
        await shutdown.CancelAsync();
        gate.SetResult();

        Assert.Equal(1, await write);
        Assert.Equal(5L, await queue.RunAsync(async group => (long)(await group.Command("SELECT SUM(v) FROM t;").ExecuteScalarAsync(Ct))!, Ct));
    }

    public void Dispose() => _directory.Dispose();

    private GroupCommitQueue Queue()
    {
        var path = Path.Combine(_directory.Path, "queue.db");
        return new GroupCommitQueue(async token =>
        {
            var connection = new SqliteConnection($"Data Source={path};Pooling=False");
            await connection.OpenAsync(token);
            return connection;
        }, _ => false, new StoreRetry(_ => false, TimeSpan.Zero, TimeProvider.System, NullLogger.Instance));
    }

    private static Task<int> Execute(GroupTransaction group, string sql) => group.Command(sql).ExecuteNonQueryAsync(Ct);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
