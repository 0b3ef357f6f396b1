using System.Data.Common;
using System.Threading.Channels;

namespace Nightshift.Storage;

/// <summary>
/// Group commit: the store's writes queue here and one loop runs whatever has queued up in one
/// transaction on its own connection, so thousands of item grains finishing at once cost a few commits
/// (each a disk flush), not thousands. Writes of one kind (<see cref="RunSharedAsync"/>) share one
/// call per group, e.g. one statement for hundreds of results. A group that fails transiently (lost
/// connection, restarting server) is run again on a new connection; a statement that fails on its own
/// fails alone, and the rest run again. A write whose token is cancelled while it still waits is
/// withdrawn (it never runs, and its caller sees the cancellation); once taken into a group it commits
/// with the group whatever its token says, and its caller waits for that.
/// </summary>
internal sealed class GroupCommitQueue : IAsyncDisposable
{
    private const int MaxWritesPerCommit = 1024;

    private readonly Channel<Write> _writes = Channel.CreateUnbounded<Write>(new() { SingleReader = true });
    private readonly Func<CancellationToken, Task<DbConnection>> _open;
    private readonly Func<Exception, bool> _failsAlone;
    private readonly StoreRetry _retry;
    private readonly Task _loop;
    private GroupTransaction? _group;

    /// <param name="open">Opens the queue's connection, set up for writing.</param>
    /// <param name="failsAlone">Whether a failure is the statement's own, so the others may still commit.</param>
    /// <param name="retry">Runs a group again after a transient failure.</param>
    public GroupCommitQueue(Func<CancellationToken, Task<DbConnection>> open, Func<Exception, bool> failsAlone, StoreRetry retry)
    {
        _open = open;
        _failsAlone = failsAlone;
        _retry = retry;
        _loop = Task.Run(RunAsync);
    }

    /// <summary>
    /// Runs <paramref name="work"/> inside the next group transaction; completes once that transaction is
    /// committed. <paramref name="work"/> may run more than once (a group is run again after a lost
    /// connection or another statement's failure), so it must only issue statements and compute its
    /// result from their answers.
    /// </summary>
    public Task<T> RunAsync<T>(Func<GroupTransaction, Task<T>> work, CancellationToken cancellationToken = default) =>
        // The lambda captures work, so each call makes a delegate of its own: a kind with one write.
        RunSharedAsync<bool, T>(async (group, _) => [await work(group)], true, cancellationToken);

    /// <summary>
    /// Runs <paramref name="item"/> in the next group transaction, in one call of <paramref name="writeAll"/>
    /// with every item queued for the same <paramref name="writeAll"/> (which answers one result per item, in order).
    /// </summary>
    public Task<TResult> RunSharedAsync<TItem, TResult>(Func<GroupTransaction, IReadOnlyList<TItem>, Task<IReadOnlyList<TResult>>> writeAll,
        TItem item, CancellationToken cancellationToken = default)
    {
        var write = new Write<TItem, TResult>(writeAll, item, cancellationToken);
        return _writes.Writer.TryWrite(write) ? write.Task : throw new ObjectDisposedException(nameof(GroupCommitQueue));
    }

    public async ValueTask DisposeAsync()
    {
        _writes.Writer.TryComplete();
        await _loop;
        await DropConnectionAsync();
    }

    private async Task RunAsync()
    {
        var queued = new List<Write>(MaxWritesPerCommit);
        while (await _writes.Reader.WaitToReadAsync())
        {
            while (queued.Count < MaxWritesPerCommit && _writes.Reader.TryRead(out var write))
            {
                if (write.TryTake())
                {
                    queued.Add(write);
                }
            }

            if (queued.Count > 0)
            {
                await CommitAsync([.. queued.GroupBy(write => write.Kind).Select(kind => kind.ToList())]);
                queued.Clear();
            }
        }
    }

    /// <summary>Commits the group, each kind of write in one call; a kind whose statement fails on its own fails alone.</summary>
    private async Task CommitAsync(List<List<Write>> group)
    {
        while (group.Count > 0)
        {
            try
            {
                await _retry.RunAsync(_ => RunOnceAsync(group), CancellationToken.None);
                group.ForEach(kind => kind.ForEach(write => write.Complete()));
                return;
            }
            catch (StatementFailedException failed)
            {
                // One statement failed (and may have taken the transaction with it): fail it alone, run the rest again.
                failed.Kind.ForEach(write => write.Fail(failed.InnerException!));
                group.Remove(failed.Kind);
            }
            catch (Exception failure)
            {
                group.ForEach(kind => kind.ForEach(write => write.Fail(failure)));
                return;
            }
        }
    }

    /// <summary>Runs the group in one transaction; a failure on the way drops the connection, so a retry starts on a new one.</summary>
    private async Task<bool> RunOnceAsync(List<List<Write>> group)
    {
        try
        {
            _group ??= new GroupTransaction(await _open(CancellationToken.None));
            await using var transaction = await _group.BeginAsync();
            foreach (var kind in group)
            {
                try
                {
                    await kind[0].ExecuteAsync(_group, kind);
                }
                catch (Exception failure) when (_failsAlone(failure))
                {
                    throw new StatementFailedException(kind, failure);
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
        if (_group is not null)
        {
            await _group.DisposeAsync();
            _group = null;
        }
    }

    private sealed class StatementFailedException(List<Write> kind, Exception failure) : Exception(failure.Message, failure)
    {
        public List<Write> Kind { get; } = kind;
    }

    /// <summary>A queued write. Writes of one <see cref="Kind"/> in a group run in one call of the first's <see cref="ExecuteAsync"/>.</summary>
    private abstract class Write
    {
        public abstract object Kind { get; }

        /// <summary>Takes the write into a group, unless it was withdrawn: from here it commits with the group.</summary>
        public abstract bool TryTake();

        public abstract Task ExecuteAsync(GroupTransaction group, List<Write> kind);

        public abstract void Complete();

        public abstract void Fail(Exception exception);
    }

    /// <summary>A write of one item that shares one call of its writeAll with the others queued for it.</summary>
    private sealed class Write<TItem, TResult> : Write
    {
        private readonly TaskCompletionSource<TResult> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Func<GroupTransaction, IReadOnlyList<TItem>, Task<IReadOnlyList<TResult>>> _writeAll;
        private readonly TItem _item;
        private readonly CancellationTokenRegistration _withdrawal;
        private TResult? _result;

        public Write(Func<GroupTransaction, IReadOnlyList<TItem>, Task<IReadOnlyList<TResult>>> writeAll, TItem item,
            CancellationToken cancellationToken)
        {
            _writeAll = writeAll;
            _item = item;
            _withdrawal = cancellationToken.Register(() => _completion.TrySetCanceled(cancellationToken));
        }

        public Task<TResult> Task => _completion.Task;

        public override object Kind => _writeAll;

        public override bool TryTake()
        {
            // Once the registration is disposed its callback has either run to its end or never will,
            // so a task not cancelled by now is the write's to complete.
            _withdrawal.Dispose();
            return !_completion.Task.IsCompleted;
        }

        public override async Task ExecuteAsync(GroupTransaction group, List<Write> kind)
        {
            var writes = kind.ConvertAll(write => (Write<TItem, TResult>)write);
            var results = await _writeAll(group, writes.ConvertAll(write => write._item));
            for (var i = 0; i < writes.Count; i++)
            {
                writes[i]._result = results[i];
            }
        }

        public override void Complete() => _completion.TrySetResult(_result!);

        public override void Fail(Exception exception) => _completion.TrySetException(exception);
    }
}

/// <summary>
/// The write connection and its open group transaction, with the commands prepared on it: the same few
/// statements run for every group, so each is prepared once per connection.
/// </summary>
internal sealed class GroupTransaction(DbConnection connection) : IAsyncDisposable
{
    private readonly Dictionary<string, DbCommand> _commands = [];
    private DbTransaction? _transaction;

    /// <summary>
    /// On SQLite this is BEGIN IMMEDIATE (Microsoft.Data.Sqlite's default): it takes the write lock up front,
    /// so several processes sharing the file wait their turn (busy timeout) instead of failing to upgrade a
    /// read transaction.
    /// </summary>
    public async Task<DbTransaction> BeginAsync() => _transaction = await connection.BeginTransactionAsync();

    /// <summary>The command for <paramref name="sql"/> on this connection, in the group transaction, with <paramref name="parameters"/> bound.</summary>
    public DbCommand Command(string sql, params ReadOnlySpan<(string Name, object? Value)> parameters)
    {
        if (!_commands.TryGetValue(sql, out var command))
        {
            command = connection.CreateCommand();
            command.CommandText = sql;
            _commands[sql] = command;
        }

        command.Transaction = _transaction;
        return command.Bind(parameters);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var command in _commands.Values)
        {
            await command.DisposeAsync();
        }

        await connection.DisposeAsync();
    }
}
