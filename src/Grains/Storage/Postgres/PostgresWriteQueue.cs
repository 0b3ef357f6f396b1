using System.Threading.Channels;
using Npgsql;

namespace Nightshift.Storage.Postgres;

/// <summary>
/// Group commit for PostgreSQL: the store's writes queue here and one loop runs whatever has queued up
/// in one transaction, so thousands of item grains finishing at once cost a few commits (each a WAL
/// flush), not thousands. A group that fails transiently (lost connection, restarting server) is run
/// again on a new connection; a statement that fails on its own fails alone, and the rest run again.
/// </summary>
internal sealed class PostgresWriteQueue : IAsyncDisposable
{
    private const int MaxOperationsPerCommit = 1024;

    private readonly Channel<WriteOperation> _operations = Channel.CreateUnbounded<WriteOperation>(new() { SingleReader = true });
    private readonly NpgsqlDataSource _dataSource;
    private readonly PostgresRetry _retry;
    private readonly Task _loop;
    private NpgsqlConnection? _connection;

    public PostgresWriteQueue(NpgsqlDataSource dataSource, PostgresRetry retry)
    {
        _dataSource = dataSource;
        _retry = retry;
        _loop = Task.Run(RunAsync);
    }

    /// <summary>
    /// Runs <paramref name="work"/> inside the next group transaction; completes once that transaction is
    /// committed. <paramref name="work"/> may run more than once (a group is retried after a lost
    /// connection), so it must only issue statements and compute its result from their answers.
    /// </summary>
    public Task<T> RunAsync<T>(Func<NpgsqlConnection, NpgsqlTransaction, Task<T>> work)
    {
        var operation = new WriteOperation<T>(work);
        if (!_operations.Writer.TryWrite(operation))
        {
            throw new ObjectDisposedException(nameof(PostgresWriteQueue));
        }

        return operation.Task;
    }

    public async ValueTask DisposeAsync()
    {
        _operations.Writer.TryComplete();
        await _loop;
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
        }
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

            await CommitAsync(group);
            group.Clear();
        }
    }

    private async Task CommitAsync(List<WriteOperation> group)
    {
        while (group.Count > 0)
        {
            try
            {
                await _retry.RunAsync(_ => RunOnceAsync(group), CancellationToken.None);
                foreach (var operation in group)
                {
                    operation.Complete();
                }

                return;
            }
            catch (StatementFailedException failed)
            {
                // One statement failed and took the transaction with it: fail it alone, run the rest again.
                failed.Operation.Fail(failed.InnerException!);
                group.Remove(failed.Operation);
            }
            catch (Exception failure)
            {
                foreach (var operation in group)
                {
                    operation.Fail(failure);
                }

                return;
            }
        }
    }

    /// <summary>Runs the group in one transaction; a failure on the way drops the connection, so a retry starts on a new one.</summary>
    private async Task<bool> RunOnceAsync(List<WriteOperation> group)
    {
        try
        {
            _connection ??= await _dataSource.OpenConnectionAsync();
            await using var transaction = await _connection.BeginTransactionAsync();
            foreach (var operation in group)
            {
                try
                {
                    await operation.ExecuteAsync(_connection, transaction);
                }
                catch (PostgresException failure) when (!PostgresRetry.IsTransient(failure))
                {
                    throw new StatementFailedException(operation, failure);
                }
            }

            await transaction.CommitAsync();
            return true;
        }
        catch (Exception failure) when (failure is not StatementFailedException)
        {
            await DropConnectionAsync();
            throw;
        }
    }

    private async Task DropConnectionAsync()
    {
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
            _connection = null;
        }
    }

    private sealed class StatementFailedException(WriteOperation operation, PostgresException failure)
        : Exception(failure.Message, failure)
    {
        public WriteOperation Operation { get; } = operation;
    }

    private abstract class WriteOperation
    {
        public abstract Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction transaction);

        public abstract void Complete();

        public abstract void Fail(Exception exception);
    }

    private sealed class WriteOperation<T>(Func<NpgsqlConnection, NpgsqlTransaction, Task<T>> work) : WriteOperation
    {
        private readonly TaskCompletionSource<T> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private T? _result;

        public Task<T> Task => _completion.Task;

        public override async Task ExecuteAsync(NpgsqlConnection connection, NpgsqlTransaction transaction) =>
            _result = await work(connection, transaction);

        public override void Complete() => _completion.TrySetResult(_result!);

        public override void Fail(Exception exception) => _completion.TrySetException(exception);
    }
}
