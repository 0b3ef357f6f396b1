using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Nightshift.Storage.Postgres;

/// <summary>
/// Group commit for PostgreSQL: the store's writes queue here and one loop runs whatever has queued up
/// in one transaction, so thousands of item grains finishing at once cost a few commits (each a WAL
/// flush), not thousands. A group that fails transiently (lost connection, restarting server) is run
/// again on a new connection; a statement that fails on its own fails alone, and the rest run again.
/// </summary>
internal sealed partial class PostgresWriteQueue : IAsyncDisposable
{
    private const int MaxOperationsPerCommit = 1024;
    private static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan LongestDelay = TimeSpan.FromSeconds(2);

    private readonly Channel<WriteOperation> _operations = Channel.CreateUnbounded<WriteOperation>(new() { SingleReader = true });
    private readonly NpgsqlDataSource _dataSource;
    private readonly TimeSpan _tolerance;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Task _loop;
    private NpgsqlConnection? _connection;

    public PostgresWriteQueue(NpgsqlDataSource dataSource, TimeSpan tolerance, TimeProvider time, ILogger logger)
    {
        _dataSource = dataSource;
        _tolerance = tolerance;
        _time = time;
        _logger = logger;
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
        var giveUpAt = _time.GetUtcNow() + _tolerance;
        var delay = FirstDelay;
        while (group.Count > 0)
        {
            WriteOperation? failedAlone = null;
            try
            {
                _connection ??= await _dataSource.OpenConnectionAsync();
                await using var transaction = await _connection.BeginTransactionAsync();
                foreach (var operation in group)
                {
                    failedAlone = operation;
                    await operation.ExecuteAsync(_connection, transaction);
                }

                failedAlone = null;
                await transaction.CommitAsync();
                foreach (var operation in group)
                {
                    operation.Complete();
                }

                return;
            }
            catch (PostgresException failure) when (failedAlone is not null && !PostgresRetry.IsTransient(failure))
            {
                // One statement failed and took the transaction with it: fail it alone, run the rest again.
                failedAlone.Fail(failure);
                group.Remove(failedAlone);
            }
            catch (Exception failure) when (PostgresRetry.IsTransient(failure) && _time.GetUtcNow() < giveUpAt)
            {
                LogRetrying(_logger, group.Count, delay.TotalMilliseconds, failure.Message);
                await DropConnectionAsync();
                await Task.Delay(delay, _time);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, LongestDelay.Ticks));
            }
            catch (Exception failure)
            {
                await DropConnectionAsync();
                foreach (var operation in group)
                {
                    operation.Fail(failure);
                }

                return;
            }
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

    [LoggerMessage(Level = LogLevel.Warning, Message = "PostgreSQL unavailable; {Count} queued writes will be tried again in {DelayMs} ms: {Reason}")]
    private static partial void LogRetrying(ILogger logger, int count, double delayMs, string reason);

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
