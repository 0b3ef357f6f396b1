using System.Runtime.CompilerServices;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Nightshift.Batches;
using Nightshift.Pools;

namespace Nightshift.Storage.Sqlite;

/// <summary>
/// The item store on one SQLite file. Writes go through <see cref="SqliteWriteQueue"/> (group commit);
/// reads use their own pooled connections, which WAL lets run beside the writer.
/// </summary>
public sealed class SqliteItemStore : IItemStore, IAsyncDisposable
{
    private readonly SqliteStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly Dictionary<string, SqliteCommand> _writerCommands = [];
    private SqliteWriteQueue? _writer;

    public SqliteItemStore(IOptions<SqliteStoreOptions> options, TimeProvider time)
    {
        _options = options.Value;
        _time = time;
    }

    private SqliteWriteQueue Writer => _writer ?? throw new InvalidOperationException("The item store was used before InitializeAsync.");

    public async Task InitializeAsync(CancellationToken cancellationToken)
    {
        if (_writer is not null)
        {
            return;
        }

        var directory = Path.GetDirectoryName(Path.GetFullPath(_options.Path));
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        await using (var connection = await OpenAsync(cancellationToken))
        {
            await SqliteSchema.ApplyAsync(connection, cancellationToken);
            if (_options.RecoverLeasesAtStart)
            {
                // Every lease belongs to a process that died: requeue them all at once.
                await using var recover = connection.CreateCommand();
                recover.CommandText = ItemStoreSql.Requeue("state = 1");
                recover.Parameters.AddWithValue("@now", Now());
                recover.Parameters.AddWithValue("@max_interruptions", _options.MaxInterruptions);
                await using var reader = await recover.ExecuteReaderAsync(cancellationToken);
                while (await reader.ReadAsync(cancellationToken))
                {
                }
            }
        }

        _writer = new SqliteWriteQueue(_options.ConnectionString, _options.SyncEveryCommit);
    }

    public async Task<IItemIngestSession> BeginIngestAsync(string batchId, string pool, CancellationToken cancellationToken)
    {
        var connection = await OpenAsync(cancellationToken);
        try
        {
            return IngestSession.Begin(batchId, pool, connection, Now());
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public Task<IReadOnlyList<ClaimedItem>> ClaimAsync(string batchId, IReadOnlyList<ItemLease> leases, DateTimeOffset now, CancellationToken cancellationToken) =>
        Writer.RunAsync<IReadOnlyList<ClaimedItem>>((connection, transaction) =>
        {
            // One statement per lease: each picks the first due pending item in input order and
            // stamps it with that lease's fencing token, inside the same group transaction.
            var claim = WriterCommand(connection, transaction, "claim", """
                UPDATE ns_items
                SET state = 1, lease_token = @token, lease_expires_at = @expires, updated_at = @now
                WHERE batch_id = @batch AND idx = (
                    SELECT idx FROM ns_items
                    WHERE batch_id = @batch AND state = 0 AND next_attempt_at <= @now
                    ORDER BY next_attempt_at, idx
                    LIMIT 1)
                RETURNING idx, custom_id, body, attempts, rate_limited_attempts;
                """);
            var claimed = new List<ClaimedItem>(leases.Count);
            foreach (var lease in leases)
            {
                Bind(claim, "@batch", batchId);
                Bind(claim, "@token", lease.Token);
                Bind(claim, "@expires", lease.ExpiresAt.ToUnixTimeMilliseconds());
                Bind(claim, "@now", now.ToUnixTimeMilliseconds());
                using var reader = claim.ExecuteReader();
                if (!reader.Read())
                {
                    break;
                }

                claimed.Add(new ClaimedItem(reader.GetInt32(0), reader.GetString(1), reader.GetString(2), reader.GetInt32(3), reader.GetInt32(4), lease));
            }

            return claimed;
        });

    public Task<bool> RecordAttemptAsync(AttemptRecord record, CancellationToken cancellationToken) =>
        Writer.RunAsync((connection, transaction) =>
        {
            // Fenced on the lease token: a result from a lease that was lost (expired, then handed
            // to another attempt) matches no row and is discarded.
            var update = WriterCommand(connection, transaction, "record", """
                UPDATE ns_items
                SET state = @state, attempts = @attempts, rate_limited_attempts = @rate_limited,
                    next_attempt_at = @next, retry_state = @retry_state, status_code = @status_code,
                    response = @response, error = @error, input_tokens = @input_tokens, output_tokens = @output_tokens, cached_tokens = @cached_tokens,
                    lease_token = NULL, lease_expires_at = NULL, updated_at = @now
                WHERE batch_id = @batch AND idx = @idx AND state = 1 AND lease_token = @token;
                """);
            Bind(update, "@batch", record.BatchId);
            Bind(update, "@idx", record.Index);
            Bind(update, "@token", record.LeaseToken);
            Bind(update, "@state", (int)record.State);
            Bind(update, "@attempts", record.Attempts);
            Bind(update, "@rate_limited", record.RateLimitedAttempts);
            Bind(update, "@next", record.NextAttemptAt?.ToUnixTimeMilliseconds() ?? 0);
            Bind(update, "@retry_state", record.RetryState);
            Bind(update, "@status_code", record.StatusCode);
            Bind(update, "@response", record.Response);
            Bind(update, "@error", record.Error);
            Bind(update, "@input_tokens", record.Usage.InputTokens);
            Bind(update, "@output_tokens", record.Usage.OutputTokens);
            Bind(update, "@cached_tokens", record.Usage.CachedTokens);
            Bind(update, "@now", record.At.ToUnixTimeMilliseconds());
            return update.ExecuteNonQuery() == 1;
        });

    public async Task<ItemCounts> CountAsync(string batchId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        return await CountAsync(connection, null, batchId, cancellationToken);
    }

    public async Task<BatchProgress> ReadProgressAsync(string batchId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);

        // One read transaction: in WAL mode both queries see the same snapshot, so an item that
        // finishes between them is neither counted twice nor lost.
        await using var snapshot = connection.BeginTransaction(deferred: true);
        var counts = await CountAsync(connection, snapshot, batchId, cancellationToken);
        var leased = await SnapshotsAsync(connection, snapshot, "batch_id = @batch AND state = 1", batchId, null, cancellationToken);
        await snapshot.CommitAsync(cancellationToken);
        return new BatchProgress(counts, leased);
    }

    private static async Task<ItemCounts> CountAsync(SqliteConnection connection, SqliteTransaction? transaction, string batchId, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = """
            SELECT state, COUNT(*), SUM(input_tokens), SUM(output_tokens), SUM(cached_tokens)
            FROM ns_items WHERE batch_id = @batch GROUP BY state;
            """;
        command.Parameters.AddWithValue("@batch", batchId);
        var perState = new long[5];
        long input = 0, output = 0, cached = 0;
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            perState[reader.GetInt32(0)] = reader.GetInt64(1);
            input += reader.GetInt64(2);
            output += reader.GetInt64(3);
            cached += reader.GetInt64(4);
        }

        return new ItemCounts(perState[0], perState[1], perState[2], perState[3], perState[4], input, output, cached);
    }

    public async Task<DateTimeOffset?> NextDueAsync(string batchId, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT MIN(next_attempt_at) FROM ns_items WHERE batch_id = @batch AND state = 0;";
        command.Parameters.AddWithValue("@batch", batchId);
        return await command.ExecuteScalarAsync(cancellationToken) is long due ? DateTimeOffset.FromUnixTimeMilliseconds(due) : null;
    }

    public bool OwnedByOneProcess => _options.RecoverLeasesAtStart;

    public Task<IReadOnlyList<RequeuedItem>> RequeueExpiredLeasesAsync(string batchId, DateTimeOffset now, CancellationToken cancellationToken) =>
        Writer.RunAsync<IReadOnlyList<RequeuedItem>>((connection, transaction) =>
        {
            using var command = connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = ItemStoreSql.RequeueExpired;
            command.Parameters.AddWithValue("@batch", batchId);
            command.Parameters.AddWithValue("@now", now.ToUnixTimeMilliseconds());
            command.Parameters.AddWithValue("@max_interruptions", _options.MaxInterruptions);
            var requeued = new List<RequeuedItem>();
            using var reader = command.ExecuteReader();
            while (reader.Read())
            {
                requeued.Add(new RequeuedItem(reader.GetInt32(0), reader.GetInt32(1) == (int)ItemState.Failed));
            }

            return requeued;
        });

    public Task<IReadOnlySet<long>> ExtendLeasesAsync(IReadOnlyList<LeaseExtension> leases, CancellationToken cancellationToken) =>
        Writer.RunAsync<IReadOnlySet<long>>((connection, transaction) =>
        {
            // Fenced like a result: only a lease still held under its token is extended.
            var extend = WriterCommand(connection, transaction, "extend", """
                UPDATE ns_items SET lease_expires_at = @expires
                WHERE batch_id = @batch AND idx = @idx AND state = 1 AND lease_token = @token;
                """);
            var extended = new HashSet<long>();
            foreach (var lease in leases)
            {
                Bind(extend, "@batch", lease.BatchId);
                Bind(extend, "@idx", lease.Index);
                Bind(extend, "@token", lease.Token);
                Bind(extend, "@expires", lease.ExpiresAt.ToUnixTimeMilliseconds());
                if (extend.ExecuteNonQuery() == 1)
                {
                    extended.Add(lease.Token);
                }
            }

            return extended;
        });

    public Task<bool> ReleaseLeaseAsync(string batchId, int index, long leaseToken, bool interrupted, CancellationToken cancellationToken) =>
        Writer.RunAsync((connection, transaction) =>
        {
            using var command = connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = """
                UPDATE ns_items
                SET state = 0, lease_token = NULL, lease_expires_at = NULL, interruptions = interruptions + @interrupted, updated_at = @now
                WHERE batch_id = @batch AND idx = @idx AND state = 1 AND lease_token = @token;
                """;
            command.Parameters.AddWithValue("@batch", batchId);
            command.Parameters.AddWithValue("@idx", index);
            command.Parameters.AddWithValue("@token", leaseToken);
            command.Parameters.AddWithValue("@interrupted", interrupted ? 1 : 0);
            command.Parameters.AddWithValue("@now", Now());
            return command.ExecuteNonQuery() == 1;
        });

    public async Task<IReadOnlyList<ItemSnapshot>> GetItemsAsync(string batchId, IReadOnlyCollection<int> indices, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        return await SnapshotsAsync(connection, null, "batch_id = @batch AND idx IN (SELECT value FROM json_each(@indices))", batchId, indices, cancellationToken);
    }

    public Task SetBatchStateAsync(string batchId, BatchState state, DateTimeOffset? finishedAt, CancellationToken cancellationToken) =>
        Writer.RunAsync((connection, transaction) =>
        {
            var update = WriterCommand(connection, transaction, "batch-state",
                "UPDATE ns_batches SET state = @state, finished_at = @finished WHERE batch_id = @batch;");
            Bind(update, "@batch", batchId);
            Bind(update, "@state", (int)state);
            Bind(update, "@finished", finishedAt?.ToUnixTimeMilliseconds());
            return update.ExecuteNonQuery();
        });

    public async Task<IReadOnlyList<BatchRecord>> ListBatchesAsync(BatchState? state, int offset, int limit, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = $"""
            SELECT batch_id, pool, item_count, state, created_at, finished_at FROM ns_batches
            {(state is null ? "" : "WHERE state = @state")}
            ORDER BY created_at DESC, batch_id LIMIT @limit OFFSET @offset;
            """;
        command.Parameters.AddWithValue("@state", (int?)state ?? 0);
        command.Parameters.AddWithValue("@limit", limit);
        command.Parameters.AddWithValue("@offset", offset);
        var batches = new List<BatchRecord>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            batches.Add(new BatchRecord(reader.GetString(0), reader.GetString(1), reader.GetInt32(2), (BatchState)reader.GetInt32(3),
                DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4)), reader.IsDBNull(5) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(5))));
        }

        return batches;
    }

    public Task RegisterPoolAsync(string name, CancellationToken cancellationToken) =>
        Writer.RunAsync((connection, transaction) =>
        {
            var insert = WriterCommand(connection, transaction, "pool", "INSERT INTO ns_pools (name, created_at) VALUES (@name, @now) ON CONFLICT (name) DO NOTHING;");
            Bind(insert, "@name", name);
            Bind(insert, "@now", Now());
            return insert.ExecuteNonQuery();
        });

    public Task<IReadOnlyList<string>> ListPoolsAsync(CancellationToken cancellationToken) =>
        ReadTextColumnAsync("SELECT name FROM ns_pools ORDER BY name;", cancellationToken);

    public async Task<TokenTotals> GetPoolUsageAsync(string pool, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();

        // A read on its own snapshot; it walks the pool's batches through the catalogue and each
        // batch's items through the primary key.
        command.CommandText = """
            SELECT COALESCE(SUM(i.input_tokens), 0), COALESCE(SUM(i.output_tokens), 0), COALESCE(SUM(i.cached_tokens), 0)
            FROM ns_batches b JOIN ns_items i ON i.batch_id = b.batch_id
            WHERE b.pool = @pool;
            """;
        command.Parameters.AddWithValue("@pool", pool);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        await reader.ReadAsync(cancellationToken);
        return new TokenTotals(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
    }

    public Task<IReadOnlyList<string>> ListUnfinishedBatchesAsync(CancellationToken cancellationToken) =>
        ReadTextColumnAsync("SELECT DISTINCT batch_id FROM ns_items WHERE state IN (0, 1);", cancellationToken);

    public Task<int> CancelPendingAsync(string batchId, CancellationToken cancellationToken) =>
        Writer.RunAsync((connection, transaction) =>
        {
            using var command = connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = """
                UPDATE ns_items SET state = 4, error = 'cancelled', updated_at = @now
                WHERE batch_id = @batch AND state = 0;
                """;
            command.Parameters.AddWithValue("@batch", batchId);
            command.Parameters.AddWithValue("@now", Now());
            return command.ExecuteNonQuery();
        });

    public async IAsyncEnumerable<ItemResult> ReadResultsAsync(string batchId, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = """
            SELECT idx, custom_id, state, status_code, response, error
            FROM ns_items WHERE batch_id = @batch AND state >= 2 ORDER BY idx;
            """;
        command.Parameters.AddWithValue("@batch", batchId);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            yield return new ItemResult(
                reader.GetInt32(0),
                reader.GetString(1),
                (ItemState)reader.GetInt32(2),
                reader.IsDBNull(3) ? null : reader.GetInt32(3),
                reader.IsDBNull(4) ? null : reader.GetString(4),
                reader.IsDBNull(5) ? null : reader.GetString(5));
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_writer is not null)
        {
            await _writer.DisposeAsync();
        }

        foreach (var command in _writerCommands.Values)
        {
            command.Dispose();
        }
    }

    private async Task<SqliteConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_options.ConnectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    private async Task<IReadOnlyList<string>> ReadTextColumnAsync(string sql, CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var command = connection.CreateCommand();
        command.CommandText = sql;
        var values = new List<string>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            values.Add(reader.GetString(0));
        }

        return values;
    }

    private static async Task<IReadOnlyList<ItemSnapshot>> SnapshotsAsync(SqliteConnection connection, SqliteTransaction? transaction, string where, string batchId,
        IReadOnlyCollection<int>? indices, CancellationToken cancellationToken)
    {
        await using var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = $"SELECT idx, state, lease_token, input_tokens, output_tokens, cached_tokens FROM ns_items WHERE {where};";
        command.Parameters.AddWithValue("@batch", batchId);
        if (indices is not null)
        {
            command.Parameters.AddWithValue("@indices", $"[{string.Join(',', indices)}]");
        }

        var items = new List<ItemSnapshot>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            items.Add(new ItemSnapshot(reader.GetInt32(0), (ItemState)reader.GetInt32(1), reader.IsDBNull(2) ? null : reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4), reader.GetInt64(5)));
        }

        return items;
    }

    private long Now() => _time.GetUtcNow().ToUnixTimeMilliseconds();

    /// <summary>A prepared command kept for the writer's connection; only the writer loop calls this.</summary>
    private SqliteCommand WriterCommand(SqliteConnection connection, SqliteTransaction transaction, string name, string sql)
    {
        if (!_writerCommands.TryGetValue(name, out var command))
        {
            command = connection.CreateCommand();
            command.CommandText = sql;
            _writerCommands[name] = command;
        }

        command.Transaction = transaction;
        return command;
    }

    private static void Bind(SqliteCommand command, string name, object? value)
    {
        var parameters = command.Parameters;
        var index = parameters.IndexOf(name);
        if (index < 0)
        {
            parameters.AddWithValue(name, value ?? DBNull.Value);
        }
        else
        {
            parameters[index].Value = value ?? DBNull.Value;
        }
    }

    /// <summary>
    /// Stages the upload in a temporary table private to its connection, so a slow or huge upload
    /// never holds the database's write lock (which would stall every running batch); the items move
    /// into ns_items in one short transaction at commit, with the batch's catalogue row.
    /// </summary>
    private sealed class IngestSession : IItemIngestSession
    {
        private readonly string _batchId;
        private readonly string _pool;
        private readonly SqliteConnection _connection;
        private readonly long _now;
        private readonly SqliteTransaction _staging;
        private readonly SqliteCommand _insert;
        private bool _committed;
        private int _added;

        private IngestSession(string batchId, string pool, SqliteConnection connection, long now)
        {
            _batchId = batchId;
            _pool = pool;
            _connection = connection;
            _now = now;
            using (var create = connection.CreateCommand())
            {
                create.CommandText = """
                    DROP TABLE IF EXISTS temp.ns_ingest;
                    CREATE TEMP TABLE ns_ingest (
                        idx       INTEGER NOT NULL PRIMARY KEY,
                        custom_id TEXT    NOT NULL UNIQUE,
                        method    TEXT    NOT NULL,
                        url       TEXT    NOT NULL,
                        body      TEXT    NOT NULL);
                    """;
                create.ExecuteNonQuery();
            }

            // Writes only the temporary database, so it locks nothing that others use.
            _staging = connection.BeginTransaction(deferred: true);
            _insert = connection.CreateCommand();
            _insert.Transaction = _staging;
            _insert.CommandText = """
                INSERT INTO temp.ns_ingest (idx, custom_id, method, url, body)
                VALUES (@idx, @custom_id, @method, @url, @body)
                ON CONFLICT (custom_id) DO NOTHING;
                """;
            _insert.Parameters.Add("@idx", SqliteType.Integer);
            _insert.Parameters.Add("@custom_id", SqliteType.Text);
            _insert.Parameters.Add("@method", SqliteType.Text);
            _insert.Parameters.Add("@url", SqliteType.Text);
            _insert.Parameters.Add("@body", SqliteType.Text);
            _insert.Prepare();
        }

        public static IngestSession Begin(string batchId, string pool, SqliteConnection connection, long now) => new(batchId, pool, connection, now);

        public async ValueTask<LineError?> AddAsync(ItemRequest item, CancellationToken cancellationToken)
        {
            _insert.Parameters["@idx"].Value = item.Index;
            _insert.Parameters["@custom_id"].Value = item.CustomId;
            _insert.Parameters["@method"].Value = item.Method;
            _insert.Parameters["@url"].Value = item.Url;
            _insert.Parameters["@body"].Value = item.Body;
            if (await _insert.ExecuteNonQueryAsync(cancellationToken) == 1)
            {
                _added++;
                return null;
            }

            await using var first = _connection.CreateCommand();
            first.Transaction = _staging;
            first.CommandText = "SELECT idx FROM temp.ns_ingest WHERE custom_id = @custom_id;";
            first.Parameters.AddWithValue("@custom_id", item.CustomId);
            var firstIndex = (long)(await first.ExecuteScalarAsync(cancellationToken))!;
            return new LineError(item.Index + 1, "custom_id", $"duplicate custom_id '{item.CustomId}' (first used on line {firstIndex + 1})");
        }

        public async Task CommitAsync(CancellationToken cancellationToken)
        {
            await _staging.CommitAsync(cancellationToken);

            // The only moment the upload holds the write lock: one INSERT … SELECT of staged rows.
            await using var publish = _connection.BeginTransaction(deferred: false);
            await using (var move = _connection.CreateCommand())
            {
                move.Transaction = publish;
                move.CommandText = """
                    INSERT INTO ns_items (batch_id, idx, custom_id, method, url, body, updated_at)
                    SELECT @batch, idx, custom_id, method, url, body, @now FROM temp.ns_ingest ORDER BY idx;
                    INSERT INTO ns_batches (batch_id, pool, item_count, state, created_at)
                    VALUES (@batch, @pool, @count, @state, @now);
                    """;
                move.Parameters.AddWithValue("@batch", _batchId);
                move.Parameters.AddWithValue("@pool", _pool);
                move.Parameters.AddWithValue("@count", _added);
                move.Parameters.AddWithValue("@state", (int)BatchState.Running);
                move.Parameters.AddWithValue("@now", _now);
                await move.ExecuteNonQueryAsync(cancellationToken);
            }

            await publish.CommitAsync(cancellationToken);
            _committed = true;
        }

        public async ValueTask DisposeAsync()
        {
            if (!_committed && _staging.Connection is not null)
            {
                await _staging.RollbackAsync();
            }

            await _insert.DisposeAsync();
            await _staging.DisposeAsync();
            await using (var drop = _connection.CreateCommand())
            {
                drop.CommandText = "DROP TABLE IF EXISTS temp.ns_ingest;";
                await drop.ExecuteNonQueryAsync();
            }

            await _connection.DisposeAsync();
        }
    }
}
