using System.IO.Hashing;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Npgsql;
using NpgsqlTypes;
using Nightshift.Batches;
using Nightshift.Pools;

namespace Nightshift.Storage.Postgres;

/// <summary>
/// The item store on PostgreSQL, shared by every silo of a cluster. Writes go through
/// <see cref="PostgresWriteQueue"/> (group commit); reads use pooled connections with automatic
/// statement preparation; every operation rides out a restarting server (<see cref="PostgresRetry"/>).
/// </summary>
public sealed class PostgresItemStore : IItemStore, IAsyncDisposable
{
    private const int MaxAttemptsPerStatement = 1024;

    private readonly PostgresStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly NpgsqlDataSource _dataSource;
    private readonly PostgresRetry _retry;
    private readonly PostgresWriteQueue _writer;

    /// <summary>
    /// Claims commit on their own connection: a freed slot waits for its next item's claim, and that
    /// wait must not include a group of results being written. (They never block each other in the
    /// database: claims lock pending rows and skip locked ones; results touch leased rows.)
    /// </summary>
    private readonly PostgresWriteQueue _claims;
    private readonly Channel<PendingAttempt> _attempts = Channel.CreateUnbounded<PendingAttempt>(new() { SingleReader = true });
    private readonly Task _attemptLoop;

    public PostgresItemStore(IOptions<PostgresStoreOptions> options, TimeProvider time, ILogger<PostgresItemStore> logger)
    {
        _options = options.Value;
        _time = time;
        _dataSource = CreateDataSource(_options.ConnectionString);
        _retry = new PostgresRetry(_options.OutageTolerance, time, logger);
        _writer = new PostgresWriteQueue(_dataSource, _retry);
        _claims = new PostgresWriteQueue(_dataSource, _retry);
        _attemptLoop = Task.Run(RecordAttemptsAsync);
    }

    /// <summary>Leases in a shared database may belong to silos that are still alive: they expire, never requeued at start.</summary>
    public bool OwnedByOneProcess => false;

    /// <summary>
    /// The connection string Orleans' providers use: the configured one, with statements prepared
    /// automatically (the providers run the same few queries over and over).
    /// </summary>
    public static string ConnectionStringFor(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        if (builder.MaxAutoPrepare == 0)
        {
            builder.MaxAutoPrepare = 64;
            builder.AutoPrepareMinUsages = 2;
        }

        builder.ApplicationName ??= "nightshift";
        return builder.ConnectionString;
    }

    public Task InitializeAsync(CancellationToken cancellationToken) =>
        _retry.RunAsync(async token =>
        {
            await using var connection = await _dataSource.OpenConnectionAsync(token);
            await PostgresSchema.ApplyAsync(connection, token);
            return true;
        }, cancellationToken);

    public async Task<IItemIngestSession> BeginIngestAsync(string batchId, string pool, CancellationToken cancellationToken)
    {
        var connection = await OpenAsync(cancellationToken);
        try
        {
            return await IngestSession.BeginAsync(batchId, pool, connection, Now(), cancellationToken);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public Task<IReadOnlyList<ClaimedItem>> ClaimAsync(string batchId, IReadOnlyList<ItemLease> leases, DateTimeOffset now, CancellationToken cancellationToken) =>
        _claims.RunAsync<IReadOnlyList<ClaimedItem>>(async (connection, transaction) =>
        {
            // One statement for all the leases: the first due pending items in input order, numbered,
            // each stamped with the lease of its number. SKIP LOCKED keeps a second activation of the
            // batch (a split-brain moment) from waiting on, or taking, the same items.
            await using var claim = new NpgsqlCommand("""
                WITH due AS (
                    SELECT idx, next_attempt_at FROM ns_items
                    WHERE batch_id = @batch AND state = 0 AND next_attempt_at <= @now
                    ORDER BY next_attempt_at, idx
                    LIMIT @count
                    FOR UPDATE SKIP LOCKED),
                numbered AS (SELECT idx, row_number() OVER (ORDER BY next_attempt_at, idx) AS n FROM due)
                UPDATE ns_items i
                SET state = 1, lease_token = (@tokens)[numbered.n], lease_expires_at = (@expires)[numbered.n], updated_at = @now
                FROM numbered
                WHERE i.batch_id = @batch AND i.idx = numbered.idx
                RETURNING i.idx, i.custom_id, i.body, i.attempts, i.rate_limited_attempts, i.lease_token;
                """, connection, transaction);
            claim.Parameters.Add(new NpgsqlParameter<string>("batch", batchId));
            claim.Parameters.Add(new NpgsqlParameter<long>("now", now.ToUnixTimeMilliseconds()));
            claim.Parameters.Add(new NpgsqlParameter<int>("count", leases.Count));
            claim.Parameters.Add(new NpgsqlParameter<long[]>("tokens", [.. leases.Select(lease => lease.Token)]));
            claim.Parameters.Add(new NpgsqlParameter<long[]>("expires", [.. leases.Select(lease => lease.ExpiresAt.ToUnixTimeMilliseconds())]));
            var byToken = leases.ToDictionary(lease => lease.Token);
            var claimed = new List<ClaimedItem>(leases.Count);
            await using var reader = await claim.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                claimed.Add(new ClaimedItem(reader.GetInt32(0), reader.GetString(1), reader.GetString(2), reader.GetInt32(3), reader.GetInt32(4), byToken[reader.GetInt64(5)]));
            }

            claimed.Sort((left, right) => left.Index.CompareTo(right.Index));
            return claimed;
        });

    /// <summary>
    /// Queues the attempt for the next group of results: all results waiting at that moment are
    /// written by one statement (arrays unnested server-side) in one commit, one round trip for hundreds.
    /// </summary>
    public Task<bool> RecordAttemptAsync(AttemptRecord record, CancellationToken cancellationToken)
    {
        var pending = new PendingAttempt(record);
        if (!_attempts.Writer.TryWrite(pending))
        {
            throw new ObjectDisposedException(nameof(PostgresItemStore));
        }

        return pending.Written.Task;
    }

    private async Task RecordAttemptsAsync()
    {
        var group = new List<PendingAttempt>(MaxAttemptsPerStatement);
        while (await _attempts.Reader.WaitToReadAsync())
        {
            while (group.Count < MaxAttemptsPerStatement && _attempts.Reader.TryRead(out var pending))
            {
                group.Add(pending);
            }

            try
            {
                var written = await _writer.RunAsync((connection, transaction) => WriteAttemptsAsync(connection, transaction, group));
                foreach (var pending in group)
                {
                    pending.Written.TrySetResult(written.Contains((pending.Record.BatchId, pending.Record.Index, pending.Record.LeaseToken)));
                }
            }
            catch (Exception failure)
            {
                foreach (var pending in group)
                {
                    pending.Written.TrySetException(failure);
                }
            }

            group.Clear();
        }
    }

    private static async Task<HashSet<(string BatchId, int Index, long LeaseToken)>> WriteAttemptsAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, List<PendingAttempt> group)
    {
        // Fenced on the lease token: a result from a lease that was lost (expired, then handed to
        // another attempt) matches no row and is discarded. The token alone says "still leased" (only
        // a claim sets it, every way out of the leased state clears it); naming state = 1 as well would
        // let the planner drive the lookups through the leased partial index, whose dead entries
        // (every item leased since the last vacuum) it then walks once per result.
        await using var update = new NpgsqlCommand("""
            UPDATE ns_items i
            SET state = r.state, attempts = r.attempts, rate_limited_attempts = r.rate_limited,
                next_attempt_at = r.next, retry_state = r.retry_state, status_code = r.status_code,
                response = r.response, error = r.error, input_tokens = r.input_tokens, output_tokens = r.output_tokens,
                cached_tokens = r.cached_tokens, lease_token = NULL, lease_expires_at = NULL, updated_at = r.at
            FROM unnest(@batches, @indices, @tokens, @states, @attempts, @rate_limited, @next, @retry_states,
                        @status_codes, @responses, @errors, @input_tokens, @output_tokens, @cached_tokens, @at)
                AS r(batch_id, idx, token, state, attempts, rate_limited, next, retry_state,
                     status_code, response, error, input_tokens, output_tokens, cached_tokens, at)
            WHERE i.batch_id = r.batch_id AND i.idx = r.idx AND i.lease_token = r.token
            RETURNING i.batch_id, i.idx, r.token;
            """, connection, transaction);
        var records = group.Select(pending => pending.Record).ToList();
        update.Parameters.Add(new NpgsqlParameter<string[]>("batches", [.. records.Select(r => r.BatchId)]));
        update.Parameters.Add(new NpgsqlParameter<int[]>("indices", [.. records.Select(r => r.Index)]));
        update.Parameters.Add(new NpgsqlParameter<long[]>("tokens", [.. records.Select(r => r.LeaseToken)]));
        update.Parameters.Add(new NpgsqlParameter<short[]>("states", [.. records.Select(r => (short)r.State)]));
        update.Parameters.Add(new NpgsqlParameter<int[]>("attempts", [.. records.Select(r => r.Attempts)]));
        update.Parameters.Add(new NpgsqlParameter<int[]>("rate_limited", [.. records.Select(r => r.RateLimitedAttempts)]));
        update.Parameters.Add(new NpgsqlParameter<long[]>("next", [.. records.Select(r => r.NextAttemptAt?.ToUnixTimeMilliseconds() ?? 0)]));
        update.Parameters.Add(new NpgsqlParameter<string?[]>("retry_states", [.. records.Select(r => r.RetryState)]));
        update.Parameters.Add(new NpgsqlParameter<int?[]>("status_codes", [.. records.Select(r => r.StatusCode)]));
        update.Parameters.Add(new NpgsqlParameter<string?[]>("responses", [.. records.Select(r => r.Response)]));
        update.Parameters.Add(new NpgsqlParameter<string?[]>("errors", [.. records.Select(r => r.Error)]));
        update.Parameters.Add(new NpgsqlParameter<long[]>("input_tokens", [.. records.Select(r => r.Usage.InputTokens)]));
        update.Parameters.Add(new NpgsqlParameter<long[]>("output_tokens", [.. records.Select(r => r.Usage.OutputTokens)]));
        update.Parameters.Add(new NpgsqlParameter<long[]>("cached_tokens", [.. records.Select(r => r.Usage.CachedTokens)]));
        update.Parameters.Add(new NpgsqlParameter<long[]>("at", [.. records.Select(r => r.At.ToUnixTimeMilliseconds())]));
        // Keyed on the token too: a group may hold a stale result beside the current one for the same item.
        var written = new HashSet<(string, int, long)>();
        await using var reader = await update.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            written.Add((reader.GetString(0), reader.GetInt32(1), reader.GetInt64(2)));
        }

        return written;
    }

    public Task<ItemCounts> CountAsync(string batchId, CancellationToken cancellationToken) =>
        ReadAsync((connection, token) => CountAsync(connection, null, batchId, token), cancellationToken);

    public Task<BatchProgress> ReadProgressAsync(string batchId, CancellationToken cancellationToken) =>
        ReadAsync(async (connection, token) =>
        {
            // One snapshot for both reads, so an item that finishes between them is neither counted twice nor lost.
            await using var snapshot = await connection.BeginTransactionAsync(System.Data.IsolationLevel.RepeatableRead, token);
            var counts = await CountAsync(connection, snapshot, batchId, token);
            var leased = await SnapshotsAsync(connection, snapshot, "batch_id = @batch AND state = 1", batchId, null, token);
            await snapshot.CommitAsync(token);
            return new BatchProgress(counts, leased);
        }, cancellationToken);

    private static async Task<ItemCounts> CountAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string batchId, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand("""
            SELECT state, count(*), sum(input_tokens)::bigint, sum(output_tokens)::bigint, sum(cached_tokens)::bigint
            FROM ns_items WHERE batch_id = @batch GROUP BY state;
            """, connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<string>("batch", batchId));
        var perState = new long[5];
        long input = 0, output = 0, cached = 0;
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            perState[reader.GetInt16(0)] = reader.GetInt64(1);
            input += reader.GetInt64(2);
            output += reader.GetInt64(3);
            cached += reader.GetInt64(4);
        }

        return new ItemCounts(perState[0], perState[1], perState[2], perState[3], perState[4], input, output, cached);
    }

    public Task<DateTimeOffset?> NextDueAsync(string batchId, CancellationToken cancellationToken) =>
        ReadAsync<DateTimeOffset?>(async (connection, token) =>
        {
            await using var command = new NpgsqlCommand("SELECT min(next_attempt_at) FROM ns_items WHERE batch_id = @batch AND state = 0;", connection);
            command.Parameters.Add(new NpgsqlParameter<string>("batch", batchId));
            return await command.ExecuteScalarAsync(token) is long due ? DateTimeOffset.FromUnixTimeMilliseconds(due) : null;
        }, cancellationToken);

    public Task<IReadOnlyList<RequeuedItem>> RequeueExpiredLeasesAsync(string batchId, DateTimeOffset now, CancellationToken cancellationToken) =>
        _writer.RunAsync<IReadOnlyList<RequeuedItem>>(async (connection, transaction) =>
        {
            await using var command = new NpgsqlCommand(ItemStoreSql.RequeueExpired, connection, transaction);
            command.Parameters.Add(new NpgsqlParameter<string>("batch", batchId));
            command.Parameters.Add(new NpgsqlParameter<long>("now", now.ToUnixTimeMilliseconds()));
            command.Parameters.Add(new NpgsqlParameter<int>("max_interruptions", _options.MaxInterruptions));
            var requeued = new List<RequeuedItem>();
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                requeued.Add(new RequeuedItem(reader.GetInt32(0), reader.GetInt16(1) == (short)ItemState.Failed));
            }

            return requeued;
        });

    public Task<IReadOnlySet<long>> ExtendLeasesAsync(IReadOnlyList<LeaseExtension> leases, CancellationToken cancellationToken) =>
        _writer.RunAsync<IReadOnlySet<long>>(async (connection, transaction) =>
        {
            // Fenced like a result (on the token alone, for the same reason): only a lease still held
            // under its token is extended. One statement for all.
            await using var extend = new NpgsqlCommand("""
                UPDATE ns_items i SET lease_expires_at = l.expires
                FROM unnest(@batches, @indices, @tokens, @expires) AS l(batch_id, idx, token, expires)
                WHERE i.batch_id = l.batch_id AND i.idx = l.idx AND i.lease_token = l.token
                RETURNING i.lease_token;
                """, connection, transaction);
            extend.Parameters.Add(new NpgsqlParameter<string[]>("batches", [.. leases.Select(lease => lease.BatchId)]));
            extend.Parameters.Add(new NpgsqlParameter<int[]>("indices", [.. leases.Select(lease => lease.Index)]));
            extend.Parameters.Add(new NpgsqlParameter<long[]>("tokens", [.. leases.Select(lease => lease.Token)]));
            extend.Parameters.Add(new NpgsqlParameter<long[]>("expires", [.. leases.Select(lease => lease.ExpiresAt.ToUnixTimeMilliseconds())]));
            var extended = new HashSet<long>();
            await using var reader = await extend.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                extended.Add(reader.GetInt64(0));
            }

            return extended;
        });

    public Task<bool> ReleaseLeaseAsync(string batchId, int index, long leaseToken, bool interrupted, CancellationToken cancellationToken) =>
        _writer.RunAsync(async (connection, transaction) =>
        {
            await using var command = new NpgsqlCommand("""
                UPDATE ns_items
                SET state = 0, lease_token = NULL, lease_expires_at = NULL, interruptions = interruptions + @interrupted, updated_at = @now
                WHERE batch_id = @batch AND idx = @idx AND state = 1 AND lease_token = @token;
                """, connection, transaction);
            command.Parameters.Add(new NpgsqlParameter<string>("batch", batchId));
            command.Parameters.Add(new NpgsqlParameter<int>("idx", index));
            command.Parameters.Add(new NpgsqlParameter<long>("token", leaseToken));
            command.Parameters.Add(new NpgsqlParameter<int>("interrupted", interrupted ? 1 : 0));
            command.Parameters.Add(new NpgsqlParameter<long>("now", Now()));
            return await command.ExecuteNonQueryAsync() == 1;
        });

    public Task<IReadOnlyList<ItemSnapshot>> GetItemsAsync(string batchId, IReadOnlyCollection<int> indices, CancellationToken cancellationToken) =>
        ReadAsync((connection, token) => SnapshotsAsync(connection, null, "batch_id = @batch AND idx = ANY(@indices)", batchId, indices, token), cancellationToken);

    public Task SetBatchStateAsync(string batchId, BatchState state, DateTimeOffset? finishedAt, CancellationToken cancellationToken) =>
        _writer.RunAsync(async (connection, transaction) =>
        {
            await using var update = new NpgsqlCommand("UPDATE ns_batches SET state = @state, finished_at = @finished WHERE batch_id = @batch;", connection, transaction);
            update.Parameters.Add(new NpgsqlParameter<string>("batch", batchId));
            update.Parameters.Add(new NpgsqlParameter<short>("state", (short)state));
            update.Parameters.Add(Nullable("finished", NpgsqlDbType.Bigint, finishedAt?.ToUnixTimeMilliseconds()));
            return await update.ExecuteNonQueryAsync();
        });

    public Task<IReadOnlyList<BatchRecord>> ListBatchesAsync(BatchState? state, int offset, int limit, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<BatchRecord>>(async (connection, token) =>
        {
            await using var command = new NpgsqlCommand($"""
                SELECT batch_id, pool, item_count, state, created_at, finished_at FROM ns_batches
                {(state is null ? "" : "WHERE state = @state")}
                ORDER BY created_at DESC, batch_id LIMIT @limit OFFSET @offset;
                """, connection);
            command.Parameters.Add(new NpgsqlParameter<short>("state", (short)(state ?? 0)));
            command.Parameters.Add(new NpgsqlParameter<int>("limit", limit));
            command.Parameters.Add(new NpgsqlParameter<int>("offset", offset));
            var batches = new List<BatchRecord>();
            await using var reader = await command.ExecuteReaderAsync(token);
            while (await reader.ReadAsync(token))
            {
                batches.Add(new BatchRecord(reader.GetString(0), reader.GetString(1), reader.GetInt32(2), (BatchState)reader.GetInt16(3),
                    DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4)), reader.IsDBNull(5) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(5))));
            }

            return batches;
        }, cancellationToken);

    public Task RegisterPoolAsync(string name, CancellationToken cancellationToken) =>
        _writer.RunAsync(async (connection, transaction) =>
        {
            await using var insert = new NpgsqlCommand("INSERT INTO ns_pools (name, created_at) VALUES (@name, @now) ON CONFLICT (name) DO NOTHING;", connection, transaction);
            insert.Parameters.Add(new NpgsqlParameter<string>("name", name));
            insert.Parameters.Add(new NpgsqlParameter<long>("now", Now()));
            return await insert.ExecuteNonQueryAsync();
        });

    public Task<IReadOnlyList<string>> ListPoolsAsync(CancellationToken cancellationToken) =>
        ReadTextColumnAsync("SELECT name FROM ns_pools ORDER BY name;", cancellationToken);

    public Task<TokenTotals> GetPoolUsageAsync(string pool, CancellationToken cancellationToken) =>
        ReadAsync(async (connection, token) =>
        {
            // The pool's batches through the catalogue, each batch's items through the primary key.
            await using var command = new NpgsqlCommand("""
                SELECT COALESCE(sum(i.input_tokens), 0)::bigint, COALESCE(sum(i.output_tokens), 0)::bigint, COALESCE(sum(i.cached_tokens), 0)::bigint
                FROM ns_batches b JOIN ns_items i ON i.batch_id = b.batch_id
                WHERE b.pool = @pool;
                """, connection);
            command.Parameters.Add(new NpgsqlParameter<string>("pool", pool));
            await using var reader = await command.ExecuteReaderAsync(token);
            await reader.ReadAsync(token);
            return new TokenTotals(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
        }, cancellationToken);

    /// <summary>Asks the catalogue, then each batch's pending and leased partial indexes: no scan of finished items.</summary>
    public Task<IReadOnlyList<string>> ListUnfinishedBatchesAsync(CancellationToken cancellationToken) =>
        ReadTextColumnAsync("""
            SELECT batch_id FROM ns_batches b
            WHERE EXISTS (SELECT 1 FROM ns_items i WHERE i.batch_id = b.batch_id AND i.state = 0)
               OR EXISTS (SELECT 1 FROM ns_items i WHERE i.batch_id = b.batch_id AND i.state = 1);
            """, cancellationToken);

    public Task<int> CancelPendingAsync(string batchId, CancellationToken cancellationToken) =>
        _writer.RunAsync(async (connection, transaction) =>
        {
            await using var command = new NpgsqlCommand("""
                UPDATE ns_items SET state = 4, error = 'cancelled', updated_at = @now
                WHERE batch_id = @batch AND state = 0;
                """, connection, transaction);
            command.Parameters.Add(new NpgsqlParameter<string>("batch", batchId));
            command.Parameters.Add(new NpgsqlParameter<long>("now", Now()));
            return await command.ExecuteNonQueryAsync();
        });

    /// <summary>Streams straight from the server's cursor: memory stays flat however many results there are.</summary>
    public async IAsyncEnumerable<ItemResult> ReadResultsAsync(string batchId, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = new NpgsqlCommand("""
            SELECT idx, custom_id, state, status_code, response, error
            FROM ns_items WHERE batch_id = @batch AND state >= 2 ORDER BY idx;
            """, connection);
        command.Parameters.Add(new NpgsqlParameter<string>("batch", batchId));
        await using var reader = await command.ExecuteReaderAsync(System.Data.CommandBehavior.SequentialAccess, cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var index = reader.GetInt32(0);
            var customId = reader.GetString(1);
            var state = (ItemState)reader.GetInt16(2);
            int? statusCode = await reader.IsDBNullAsync(3, cancellationToken) ? null : reader.GetInt32(3);
            var response = await reader.IsDBNullAsync(4, cancellationToken) ? null : reader.GetString(4);
            var error = await reader.IsDBNullAsync(5, cancellationToken) ? null : reader.GetString(5);
            yield return new ItemResult(index, customId, state, statusCode, response, error);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _attempts.Writer.TryComplete();
        await _attemptLoop;
        await _writer.DisposeAsync();
        await _claims.DisposeAsync();
        await _dataSource.DisposeAsync();
    }

    private static NpgsqlDataSource CreateDataSource(string connectionString) =>
        new NpgsqlDataSourceBuilder(ConnectionStringFor(connectionString)).Build();

    private Task<NpgsqlConnection> OpenAsync(CancellationToken cancellationToken) =>
        _retry.RunAsync(token => _dataSource.OpenConnectionAsync(token).AsTask(), cancellationToken);

    private Task<T> ReadAsync<T>(Func<NpgsqlConnection, CancellationToken, Task<T>> read, CancellationToken cancellationToken) =>
        _retry.RunAsync(async token =>
        {
            await using var connection = await _dataSource.OpenConnectionAsync(token);
            return await read(connection, token);
        }, cancellationToken);

    private Task<IReadOnlyList<string>> ReadTextColumnAsync(string sql, CancellationToken cancellationToken) =>
        ReadAsync<IReadOnlyList<string>>(async (connection, token) =>
        {
            await using var command = new NpgsqlCommand(sql, connection);
            var values = new List<string>();
            await using var reader = await command.ExecuteReaderAsync(token);
            while (await reader.ReadAsync(token))
            {
                values.Add(reader.GetString(0));
            }

            return values;
        }, cancellationToken);

    private static async Task<IReadOnlyList<ItemSnapshot>> SnapshotsAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, string where, string batchId,
        IReadOnlyCollection<int>? indices, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand($"SELECT idx, state, lease_token, input_tokens, output_tokens, cached_tokens FROM ns_items WHERE {where};", connection, transaction);
        command.Parameters.Add(new NpgsqlParameter<string>("batch", batchId));
        if (indices is not null)
        {
            command.Parameters.Add(new NpgsqlParameter<int[]>("indices", [.. indices]));
        }

        var items = new List<ItemSnapshot>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            items.Add(new ItemSnapshot(reader.GetInt32(0), (ItemState)reader.GetInt16(1), reader.IsDBNull(2) ? null : reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4), reader.GetInt64(5)));
        }

        return items;
    }

    private static NpgsqlParameter Nullable(string name, NpgsqlDbType type, object? value) =>
        new(name, type) { Value = value ?? DBNull.Value };

    private long Now() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    private sealed class PendingAttempt(AttemptRecord record)
    {
        public AttemptRecord Record { get; } = record;

        public TaskCompletionSource<bool> Written { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }

    /// <summary>
    /// Streams the upload into ns_items with binary COPY inside one transaction: nothing is visible to
    /// anyone until the commit, and PostgreSQL's MVCC lets every running batch go on meanwhile.
    /// Duplicates are caught on the way by a 64-bit hash of each custom_id (8 bytes an item, not the
    /// strings); a hash seen before pauses the COPY to ask the table which line used it first.
    /// </summary>
    private sealed class IngestSession : IItemIngestSession
    {
        private const string CopyCommand = "COPY ns_items (batch_id, idx, custom_id, method, url, body, updated_at) FROM STDIN (FORMAT BINARY)";

        private readonly string _batchId;
        private readonly string _pool;
        private readonly NpgsqlConnection _connection;
        private readonly NpgsqlTransaction _transaction;
        private readonly long _now;
        private readonly HashSet<ulong> _seen = [];
        private NpgsqlBinaryImporter? _copy;
        private int _added;

        private IngestSession(string batchId, string pool, NpgsqlConnection connection, NpgsqlTransaction transaction, long now)
        {
            _batchId = batchId;
            _pool = pool;
            _connection = connection;
            _transaction = transaction;
            _now = now;
        }

        public static async Task<IngestSession> BeginAsync(string batchId, string pool, NpgsqlConnection connection, long now, CancellationToken cancellationToken)
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken);
            return new IngestSession(batchId, pool, connection, transaction, now);
        }

        public async ValueTask<LineError?> AddAsync(ItemRequest item, CancellationToken cancellationToken)
        {
            if (!_seen.Add(XxHash3.HashToUInt64(MemoryMarshal.AsBytes(item.CustomId.AsSpan()))) && await FirstLineOfAsync(item.CustomId, cancellationToken) is { } firstIndex)
            {
                return new LineError(item.Index + 1, "custom_id", $"duplicate custom_id '{item.CustomId}' (first used on line {firstIndex + 1})");
            }

            _copy ??= await _connection.BeginBinaryImportAsync(CopyCommand, cancellationToken);
            await _copy.StartRowAsync(cancellationToken);
            await _copy.WriteAsync(_batchId, NpgsqlDbType.Text, cancellationToken);
            await _copy.WriteAsync(item.Index, NpgsqlDbType.Integer, cancellationToken);
            await _copy.WriteAsync(item.CustomId, NpgsqlDbType.Text, cancellationToken);
            await _copy.WriteAsync(item.Method, NpgsqlDbType.Text, cancellationToken);
            await _copy.WriteAsync(item.Url, NpgsqlDbType.Text, cancellationToken);
            await _copy.WriteAsync(item.Body, NpgsqlDbType.Text, cancellationToken);
            await _copy.WriteAsync(_now, NpgsqlDbType.Bigint, cancellationToken);
            _added++;
            return null;
        }

        public async Task CommitAsync(CancellationToken cancellationToken)
        {
            await FinishCopyAsync(cancellationToken);
            await using (var catalogue = new NpgsqlCommand("""
                INSERT INTO ns_batches (batch_id, pool, item_count, state, created_at)
                VALUES (@batch, @pool, @count, @state, @now);
                """, _connection, _transaction))
            {
                catalogue.Parameters.Add(new NpgsqlParameter<string>("batch", _batchId));
                catalogue.Parameters.Add(new NpgsqlParameter<string>("pool", _pool));
                catalogue.Parameters.Add(new NpgsqlParameter<int>("count", _added));
                catalogue.Parameters.Add(new NpgsqlParameter<short>("state", (short)BatchState.Running));
                catalogue.Parameters.Add(new NpgsqlParameter<long>("now", _now));
                await catalogue.ExecuteNonQueryAsync(cancellationToken);
            }

            await _transaction.CommitAsync(cancellationToken);
        }

        public async ValueTask DisposeAsync()
        {
            if (_copy is not null)
            {
                // Not completed: disposing cancels the COPY.
                await _copy.DisposeAsync();
            }

            // Disposing an uncommitted transaction rolls it back: nothing of the upload stays.
            await _transaction.DisposeAsync();
            await _connection.DisposeAsync();
        }

        /// <summary>The 0-based line that already holds <paramref name="customId"/>, or null when the hash matched by chance.</summary>
        private async Task<int?> FirstLineOfAsync(string customId, CancellationToken cancellationToken)
        {
            await FinishCopyAsync(cancellationToken);
            await using var first = new NpgsqlCommand("SELECT idx FROM ns_items WHERE batch_id = @batch AND custom_id = @custom_id;", _connection, _transaction);
            first.Parameters.Add(new NpgsqlParameter<string>("batch", _batchId));
            first.Parameters.Add(new NpgsqlParameter<string>("custom_id", customId));
            return await first.ExecuteScalarAsync(cancellationToken) as int?;
        }

        private async Task FinishCopyAsync(CancellationToken cancellationToken)
        {
            if (_copy is not null)
            {
                await _copy.CompleteAsync(cancellationToken);
                await _copy.DisposeAsync();
                _copy = null;
            }
        }
    }
}
