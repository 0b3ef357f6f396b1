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
    private const int MaxOperationsPerCommit = 1024;

    private readonly Channel<Write> _operations = Channel.CreateUnbounded<Write>(new() { SingleReader = true });
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
        Enqueue(new Operation<T>(work), cancellationToken);

    /// <summary>
    /// Runs <paramref name="item"/> in the next group transaction, in one call of <paramref name="writeAll"/>
    /// with every item queued for the same <paramref name="writeAll"/> (which answers one result per item, in order).
    /// </summary>
    public Task<TResult> RunSharedAsync<TItem, TResult>(Func<GroupTransaction, IReadOnlyList<TItem>, Task<IReadOnlyList<TResult>>> writeAll, TItem item,
        CancellationToken cancellationToken = default) =>
        Enqueue(new Shared<TItem, TResult>(writeAll, item), cancellationToken);

    public async ValueTask DisposeAsync()
    {
        _operations.Writer.TryComplete();
        await _loop;
        await DropConnectionAsync();
    }

    private Task<T> Enqueue<T>(Write<T> write, CancellationToken cancellationToken)
    {
        write.WithdrawOn(cancellationToken);
        return _operations.Writer.TryWrite(write) ? write.Task : throw new ObjectDisposedException(nameof(GroupCommitQueue));
    }

    private async Task RunAsync()
    {
        var queued = new List<Write>(MaxOperationsPerCommit);
        while (await _operations.Reader.WaitToReadAsync())
        {
            while (queued.Count < MaxOperationsPerCommit && _operations.Reader.TryRead(out var write))
            {
                if (write.TryTake())
                {
                    queued.Add(write);
                }
            }

            if (queued.Count == 0)
            {
                continue;
            }

            await CommitAsync([.. queued.GroupBy(write => write.Kind).Select(kind => kind.ToList())]);
            queued.Clear();
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
        private const int Waiting = 0;
        private const int Taken = 1;
        private const int Withdrawn = 2;

        private int _state;
        private CancellationTokenRegistration _withdrawal;

        public abstract object Kind { get; }

        /// <summary>Withdraws the write if <paramref name="cancellationToken"/> fires while it still waits.</summary>
        public void WithdrawOn(CancellationToken cancellationToken)
        {
            if (cancellationToken.CanBeCanceled)
            {
                _withdrawal = cancellationToken.Register(() =>
                {
                    if (Interlocked.CompareExchange(ref _state, Withdrawn, Waiting) == Waiting)
                    {
                        Cancel(cancellationToken);
                    }
                });
            }
        }

        /// <summary>Takes the write into a group, unless it was withdrawn: from here it commits with the group.</summary>
        public bool TryTake()
        {
            var taken = Interlocked.CompareExchange(ref _state, Taken, Waiting) == Waiting;
            _withdrawal.Dispose();
            return taken;
        }

        public abstract Task ExecuteAsync(GroupTransaction group, List<Write> kind);

        public abstract void Complete();

        public abstract void Fail(Exception exception);

        protected abstract void Cancel(CancellationToken cancellationToken);
    }

    private abstract class Write<T> : Write
    {
        private readonly TaskCompletionSource<T> _completion = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<T> Task => _completion.Task;

        public T? Result { get; set; }

        public override void Complete() => _completion.TrySetResult(Result!);

        public override void Fail(Exception exception) => _completion.TrySetException(exception);

        protected override void Cancel(CancellationToken cancellationToken) => _completion.TrySetCanceled(cancellationToken);
    }

    /// <summary>A write of its own kind.</summary>
    private sealed class Operation<T>(Func<GroupTransaction, Task<T>> work) : Write<T>
    {
        public override object Kind => this;

        public override async Task ExecuteAsync(GroupTransaction group, List<Write> kind) => Result = await work(group);
    }

    /// <summary>A write that shares one call of <paramref name="writeAll"/> with the others queued for it.</summary>
    private sealed class Shared<TItem, TResult>(Func<GroupTransaction, IReadOnlyList<TItem>, Task<IReadOnlyList<TResult>>> writeAll, TItem item) : Write<TResult>
    {
        public override object Kind => writeAll;

        public override async Task ExecuteAsync(GroupTransaction group, List<Write> kind)
        {
            var results = await writeAll(group, [.. kind.Select(write => ((Shared<TItem, TResult>)write).Item)]);
            for (var i = 0; i < kind.Count; i++)
            {
                ((Shared<TItem, TResult>)kind[i]).Result = results[i];
            }
        }

        private TItem Item => item;
    }
}

/// <summary>
/// The write connection and its open group transaction, with the commands prepared on it: the same few
/// statements run for every group, so each is prepared once per connection.
/// </summary>
internal sealed class GroupTransaction(DbConnection connection) : IAsyncDisposable
{
    private readonly Dictionary<string, DbCommand> _commands = [];

    public DbConnection Connection { get; } = connection;

    public DbTransaction? Transaction { get; private set; }

    /// <summary>
    /// On SQLite this is BEGIN IMMEDIATE (Microsoft.Data.Sqlite's default): it takes the write lock up front,
    /// so several processes sharing the file wait their turn (busy timeout) instead of failing to upgrade a
    /// read transaction.
    /// </summary>
    public async Task<DbTransaction> BeginAsync() => Transaction = await Connection.BeginTransactionAsync();

    /// <summary>The command for <paramref name="sql"/> on this connection, in the group transaction, with <paramref name="parameters"/> bound.</summary>
    public DbCommand Command(string sql, params ReadOnlySpan<(string Name, object? Value)> parameters)
    {
        if (!_commands.TryGetValue(sql, out var command))
        {
            command = Connection.CreateCommand();
            command.CommandText = sql;
            _commands[sql] = command;
        }

        command.Transaction = Transaction;
        return command.Bind(parameters);
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var command in _commands.Values)
        {
            await command.DisposeAsync();
        }

        await Connection.DisposeAsync();
    }
}
