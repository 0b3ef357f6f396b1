using System.Threading.Channels;
using Microsoft.Data.Sqlite;

namespace Nightshift.Storage.Sqlite;

/// <summary>
/// Group commit for SQLite: every write of the store is queued here and one loop runs whatever has
/// queued up in one transaction, so thousands of item grains finishing at once cost a few commits,
/// not thousands. SQLite has one writer at a time anyway; this makes that writer work in bulk.
/// </summary>
internal sealed class SqliteWriteQueue : IAsyncDisposable
{
    private const int MaxOperationsPerCommit = 1024;

    private readonly Channel<WriteOperation> _operations = Channel.CreateUnbounded<WriteOperation>(new() { SingleReader = true });
    private readonly SqliteConnection _connection;
    private readonly Task _loop;

    public SqliteWriteQueue(string connectionString, bool syncEveryCommit)
    {
        _connection = new SqliteConnection(connectionString);
        _connection.Open();
        using (var synchronous = _connection.CreateCommand())
        {
            // Per connection; see SqliteStoreOptions.SyncEveryCommit for what NORMAL gives up.
            synchronous.CommandText = syncEveryCommit ? "PRAGMA synchronous = FULL;" : "PRAGMA synchronous = NORMAL;";
            synchronous.ExecuteNonQuery();
        }

        _loop = Task.Run(RunAsync);
    }

    /// <summary>Runs <paramref name="work"/> inside the next group transaction; completes once that transaction is committed.</summary>
    public Task<T> RunAsync<T>(Func<SqliteConnection, SqliteTransaction, T> work)
    {
        var operation = new WriteOperation<T>(work);
        if (!_operations.Writer.TryWrite(operation))
        {
            throw new ObjectDisposedException(nameof(SqliteWriteQueue));
        }

        return operation.Task;
    }

    public async ValueTask DisposeAsync()
    {
        _operations.Writer.TryComplete();
        await _loop;
        await _connection.DisposeAsync();
    }

    private async Task RunAsync()
    {
        var group = new List<WriteOperation>(MaxOperationsPerCommit);
        while (await _operations.Reader.WaitToReadAsync())
        {
            while (group.Count < MaxOperationsPerCommit && _operations.Reader.TryRead(out var operation))
            {
                group.Add(operation);
            }

            Commit(group);
            group.Clear();
        }
    }

    private void Commit(List<WriteOperation> group)
    {
        try
        {
            // IMMEDIATE: take the write lock up front, so several processes sharing the file wait their turn
            // (busy timeout) instead of failing to upgrade a read transaction.
            using var transaction = _connection.BeginTransaction(deferred: false);
            foreach (var operation in group)
            {
                // A failed statement rolls back only itself in SQLite; the others still commit.
                operation.Execute(_connection, transaction);
            }

            transaction.Commit();
        }
        catch (Exception commitFailure)
        {
            foreach (var operation in group)
            {
                operation.Fail(commitFailure);
            }

            return;
        }

        foreach (var operation in group)
        {
            operation.Complete();
        }
    }

    private abstract class WriteOperation
    {
        public abstract void Execute(SqliteConnection connection, SqliteTransaction transaction);

        public abstract void Complete();

        public abstract void Fail(Exception exception);
    }

    private sealed class WriteOperation<T>(Func<SqliteConnection, SqliteTransaction, T> work) : WriteOperation
    {
        private readonly TaskCompletionSource<T> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T? _result;
        private Exception? _failure;

        public Task<T> Task => _completion.Task;

        public override void Execute(SqliteConnection connection, SqliteTransaction transaction)
        {
            try
            {
                _result = work(connection, transaction);
            }
            catch (SqliteException failure)
            {
                _failure = failure;
            }
        }

        public override void Complete()
        {
            if (_failure is null)
            {
                _completion.TrySetResult(_result!);
            }
            else
            {
                _completion.TrySetException(_failure);
            }
        }

        public override void Fail(Exception exception) => _completion.TrySetException(exception);
    }
}
