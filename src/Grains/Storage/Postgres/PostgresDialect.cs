using System.Data;
using System.Data.Common;
using System.IO.Hashing;
using System.Runtime.InteropServices;
using Npgsql;
using NpgsqlTypes;
using Nightshift.Batches;
using Nightshift.Pools;
using static Nightshift.Storage.ItemSql;

namespace Nightshift.Storage.Postgres;

/// <summary>
/// The item store on PostgreSQL, shared by every silo of a cluster: pooled connections with automatic
/// statement preparation, set-based statements (arrays unnested server-side) where SQLite runs one per item.
/// </summary>
internal sealed class PostgresDialect(string connectionString) : ItemStoreDialect
{
    /// <summary>The advisory lock every silo takes while it migrates ("nightshift" in ASCII, as a number).</summary>
    private const long MigrationLock = 0x6E69676874736866;

    private static readonly string Claim = $"""
        WITH due AS (
            SELECT idx, next_attempt_at FROM ns_items
            WHERE batch_id = @batch AND state = {Pending} AND stage = @stage AND next_attempt_at <= @now
            ORDER BY next_attempt_at, idx
            LIMIT @count
            FOR UPDATE SKIP LOCKED),
        numbered AS (SELECT idx, row_number() OVER (ORDER BY next_attempt_at, idx) AS n FROM due)
        UPDATE ns_items i
        SET state = {Leased}, lease_token = (@tokens)[numbered.n], lease_expires_at = (@expires)[numbered.n], updated_at = @now
        FROM numbered
        WHERE i.batch_id = @batch AND i.idx = numbered.idx
        RETURNING i.idx, i.custom_id, i.body, i.attempts, i.rate_limited_attempts, i.retry_state, i.lease_token;
        """;

    private readonly NpgsqlDataSource _dataSource = new NpgsqlDataSourceBuilder(ConnectionStringFor(connectionString)).Build();

    /// <summary>Leases in a shared database may belong to silos that are still alive: they expire, never requeued at start.</summary>
    public override bool OwnedByOneProcess => false;

    /// <summary>Claims never block results in the database: claims lock pending rows and skip locked ones; results touch leased rows.</summary>
    public override bool ClaimsOnOwnConnection => true;

    public override string IndexIn => "idx = ANY(@indices)";

    /// <summary>Asks the catalogue, then each batch's pending and leased partial indexes: no scan of finished items.</summary>
    public override string ListUnfinished { get; } = $"""
        SELECT batch_id FROM ns_batches b
        WHERE EXISTS (SELECT 1 FROM ns_items i WHERE i.batch_id = b.batch_id AND i.state = {Pending})
           OR EXISTS (SELECT 1 FROM ns_items i WHERE i.batch_id = b.batch_id AND i.state = {Leased});
        """;

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

    /// <summary>
    /// Failures that another try can cure: the connection broke, the server is shutting down or
    /// starting, or it is out of connections. Errors in the statement itself are not among them.
    /// </summary>
    public override bool IsTransient(Exception failure) => failure switch
    {
        PostgresException postgres => postgres.IsTransient || postgres.SqlState.StartsWith("57P", StringComparison.Ordinal) || postgres.SqlState.StartsWith("08", StringComparison.Ordinal),
        NpgsqlException npgsql => npgsql.IsTransient || npgsql.InnerException is IOException or System.Net.Sockets.SocketException,
        _ => false,
    };

    /// <summary>A statement's own error takes its transaction with it; the group then runs again without it.</summary>
    public override bool FailsAlone(Exception failure) => failure is PostgresException && !IsTransient(failure);

    public override async Task<DbConnection> OpenAsync(CancellationToken cancellationToken) => await _dataSource.OpenConnectionAsync(cancellationToken);

    protected override IReadOnlyList<string> Migrations => PostgresSchema.Migrations;

    protected override (string Type, string Now) AppliedAt => ("timestamptz", "now()");

    /// <summary>A transaction holding an advisory lock, so silos starting at once apply each step exactly once.</summary>
    protected override async Task<DbTransaction> BeginMigrationAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        var transaction = await connection.BeginTransactionAsync(cancellationToken);

        // The lock comes first: CREATE TABLE IF NOT EXISTS itself races between sessions.
        await connection.ExecuteAsync(transaction, "SELECT pg_advisory_xact_lock(@lock);", cancellationToken,
            ("@lock", MigrationLock));
        return transaction;
    }

    public override async Task<DbTransaction> BeginSnapshotAsync(DbConnection connection, CancellationToken cancellationToken) =>
        await connection.BeginTransactionAsync(IsolationLevel.RepeatableRead, cancellationToken);

    public override object Indices(IReadOnlyCollection<int> indices) => indices.ToArray();

    public override async Task<IReadOnlyList<ClaimedItem>> ClaimAsync(GroupTransaction group, string batchId, int stage, IReadOnlyList<ItemLease> leases, long now)
    {
        // One statement for all the leases: the first due pending items in input order, numbered,
        // each stamped with the lease of its number. SKIP LOCKED keeps a second activation of the
        // batch (a split-brain moment) from waiting on, or taking, the same items.
        var claim = group.Command(Claim, ("@batch", batchId), ("@stage", stage), ("@now", now), ("@count", leases.Count), ("@tokens", leases.Select(lease => lease.Token).ToArray()),
            ("@expires", leases.Select(lease => lease.ExpiresAt.Millis()).ToArray()));
        var byToken = leases.ToDictionary(lease => lease.Token);
        var claimed = await claim.ReadAllAsync(reader => ReadClaim(reader, byToken[reader.GetInt64(6)]), CancellationToken.None);
        return [.. claimed.OrderBy(item => item.Index)];
    }

    /// <summary>Adds attempts to their items' histories, a few hundred rows a statement (a round trip each, not one a row).</summary>
    public override async Task LogAttemptsAsync(GroupTransaction group, IReadOnlyList<(string BatchId, int Index, long Token, AttemptLog Log)> attempts)
    {
        foreach (var chunk in attempts.Chunk(200))
        {
            var rows = new List<string>(chunk.Length);
            var parameters = new List<(string Name, object? Value)>(chunk.Length * 15);
            for (var i = 0; i < chunk.Length; i++)
            {
                var (batchId, index, token, log) = chunk[i];
                var names = Enumerable.Range(0, 15).Select(column => $"@a{i}_{column}").ToArray();
                rows.Add($"({string.Join(", ", names)})");
                object?[] values = [batchId, (long)index, token, log.StartedAt.Millis(), (long)log.Duration.TotalMilliseconds, log.Pool, log.Model, log.Outcome,
                    (long?)log.StatusCode, log.Error, log.Usage.InputTokens, log.Usage.OutputTokens, log.Usage.CachedTokens, log.MaybeBilled ? 1L : 0L, log.EstimatedTokens];
                parameters.AddRange(names.Zip(values));
            }

            await group.Command($"INSERT INTO ns_attempts ({AttemptColumns}) VALUES {string.Join(", ", rows)} ON CONFLICT DO NOTHING;",
                CollectionsMarshal.AsSpan(parameters)).ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    public override async Task<IReadOnlyList<bool>> RecordAsync(GroupTransaction group, IReadOnlyList<AttemptRecord> records)
    {
        // The token alone says "still leased" (only a claim sets it, every way out of the leased state
        // clears it); naming the leased state as well would let the planner drive the lookups through
        // the leased partial index, whose dead entries (every item leased since the last vacuum) it
        // then walks once per result.
        var update = group.Command("""
            UPDATE ns_items i
            SET state = r.state, attempts = r.attempts, rate_limited_attempts = r.rate_limited,
                next_attempt_at = r.next, retry_state = r.retry_state, status_code = r.status_code,
                response = r.response, error = r.error, input_tokens = r.input_tokens, output_tokens = r.output_tokens,
                cached_tokens = r.cached_tokens, stage = r.stage, lease_token = NULL, lease_expires_at = NULL, updated_at = r.at
            FROM unnest(@batches, @indices, @tokens, @states, @attempts, @rate_limited, @next, @retry_states,
                        @status_codes, @responses, @errors, @input_tokens, @output_tokens, @cached_tokens, @stages, @at)
                AS r(batch_id, idx, token, state, attempts, rate_limited, next, retry_state,
                     status_code, response, error, input_tokens, output_tokens, cached_tokens, stage, at)
            WHERE i.batch_id = r.batch_id AND i.idx = r.idx AND i.lease_token = r.token
            RETURNING i.batch_id, i.idx, r.token;
            """, ("@batches", Column(records, r => r.BatchId)), ("@indices", Column(records, r => r.Index)), ("@tokens", Column(records, r => r.LeaseToken)),
            ("@states", Column(records, r => (short)r.State)), ("@attempts", Column(records, r => r.Attempts)), ("@rate_limited", Column(records, r => r.RateLimitedAttempts)),
            ("@next", Column(records, r => r.NextAttemptAt?.Millis() ?? 0)), ("@retry_states", Column(records, r => r.RetryState)),
            ("@status_codes", Column(records, r => r.StatusCode)), ("@responses", Column(records, r => r.Response)), ("@errors", Column(records, r => r.Error)),
            ("@input_tokens", Column(records, r => r.Usage.InputTokens)), ("@output_tokens", Column(records, r => r.Usage.OutputTokens)),
            ("@cached_tokens", Column(records, r => r.Usage.CachedTokens)), ("@stages", Column(records, r => r.Stage)), ("@at", Column(records, r => r.At.Millis())));

        // Keyed on the token too: a group may hold a stale result beside the current one for the same item.
        var written = (await update.ReadAllAsync(reader => (reader.GetString(0), reader.GetInt32(1), reader.GetInt64(2)), CancellationToken.None)).ToHashSet();
        return [.. records.Select(r => written.Contains((r.BatchId, r.Index, r.LeaseToken)))];
    }

    public override async Task<IReadOnlySet<ClaimKey>> ExtendAsync(GroupTransaction group, IReadOnlyList<LeaseExtension> leases)
    {
        // Fenced on the token alone, for the same reason as a result. One statement for all.
        var extend = group.Command("""
            UPDATE ns_items i SET lease_expires_at = l.expires
            FROM unnest(@batches, @indices, @tokens, @expires) AS l(batch_id, idx, token, expires)
            WHERE i.batch_id = l.batch_id AND i.idx = l.idx AND i.lease_token = l.token
            RETURNING i.batch_id, i.lease_token;
            """, ("@batches", Column(leases, l => l.BatchId)), ("@indices", Column(leases, l => l.Index)), ("@tokens", Column(leases, l => l.Token)),
            ("@expires", Column(leases, l => l.ExpiresAt.Millis())));
        return (await extend.ReadAllAsync(reader => new ClaimKey(reader.GetString(0), reader.GetInt64(1)), CancellationToken.None)).ToHashSet();
    }

    public override async Task<IItemIngestSession> BeginIngestAsync(DbConnection connection, string batchId, string pool, long now, CancellationToken cancellationToken) =>
        new IngestSession(batchId, pool, (NpgsqlConnection)connection, await ((NpgsqlConnection)connection).BeginTransactionAsync(cancellationToken), now);

    public override ValueTask DisposeAsync() => _dataSource.DisposeAsync();

    private static T[] Column<TRow, T>(IReadOnlyList<TRow> rows, Func<TRow, T> value) => [.. rows.Select(value)];

    /// <summary>
    /// Streams the upload into ns_items with binary COPY inside one transaction: nothing is visible to
    /// anyone until the commit, and PostgreSQL's MVCC lets every running batch go on meanwhile.
    /// Duplicates are caught on the way by a 64-bit hash of each custom_id (8 bytes an item, not the
    /// strings); a hash seen before pauses the COPY to ask the table which line used it first.
    /// </summary>
    private sealed class IngestSession(string batchId, string pool, NpgsqlConnection connection, NpgsqlTransaction transaction, long now)
        : ItemIngest(batchId, pool, now), IItemIngestSession
    {
        private const string CopyCommand = "COPY ns_items (batch_id, idx, custom_id, method, url, body, updated_at) FROM STDIN (FORMAT BINARY)";

        private readonly HashSet<ulong> _seen = [];
        private NpgsqlBinaryImporter? _copy;

        public async ValueTask<LineError?> AddAsync(ItemRequest item, CancellationToken cancellationToken)
        {
            try
            {
                return await CopyAsync(item, cancellationToken);
            }
            catch (PostgresException taken) when (taken.SqlState == PostgresErrorCodes.UniqueViolation)
            {
                throw new BatchExistsException(BatchId, taken);
            }
        }

        public async Task CommitAsync(BatchOptions options, string? fingerprint, CancellationToken cancellationToken)
        {
            // Another ingest of this id holds its rows' keys until it ends; once it has committed, the
            // COPY or the catalogue row of this one meets them.
            try
            {
                await FinishCopyAsync(cancellationToken);
                await connection.ExecuteAsync(transaction, InsertBatch, cancellationToken, BatchRow(options, fingerprint));
            }
            catch (PostgresException taken) when (taken.SqlState == PostgresErrorCodes.UniqueViolation)
            {
                throw new BatchExistsException(BatchId, taken);
            }

            await transaction.CommitAsync(cancellationToken);
        }

        private async Task<LineError?> CopyAsync(ItemRequest item, CancellationToken cancellationToken)
        {
            if (!_seen.Add(XxHash3.HashToUInt64(MemoryMarshal.AsBytes(item.CustomId.AsSpan()))) && await FirstLineOfAsync(item.CustomId, cancellationToken) is { } firstIndex)
            {
                return Duplicate(item, firstIndex);
            }

            _copy ??= await connection.BeginBinaryImportAsync(CopyCommand, cancellationToken);
            await _copy.StartRowAsync(cancellationToken);
            await _copy.WriteAsync(BatchId, NpgsqlDbType.Text, cancellationToken);
            await _copy.WriteAsync(item.Index, NpgsqlDbType.Integer, cancellationToken);
            await _copy.WriteAsync(item.CustomId, NpgsqlDbType.Text, cancellationToken);
            await _copy.WriteAsync(item.Method, NpgsqlDbType.Text, cancellationToken);
            await _copy.WriteAsync(item.Url, NpgsqlDbType.Text, cancellationToken);
            await _copy.WriteAsync(item.Body, NpgsqlDbType.Text, cancellationToken);
            await _copy.WriteAsync(Now, NpgsqlDbType.Bigint, cancellationToken);
            Added++;
            return null;
        }

        public async ValueTask DisposeAsync()
        {
            if (_copy is not null)
            {
                // Not completed: disposing cancels the COPY.
                await _copy.DisposeAsync();
            }

            // Disposing an uncommitted transaction rolls it back: nothing of the upload stays.
            await transaction.DisposeAsync();
            await connection.DisposeAsync();
        }

        /// <summary>The 0-based line that already holds <paramref name="customId"/>, or null when the hash matched by chance.</summary>
        private async Task<int?> FirstLineOfAsync(string customId, CancellationToken cancellationToken)
        {
            await FinishCopyAsync(cancellationToken);
            const string First = "SELECT idx FROM ns_items WHERE batch_id = @batch AND custom_id = @custom_id;";
            return await connection.ScalarAsync(
                transaction, First, cancellationToken, ("@batch", BatchId), ("@custom_id", customId)) as int?;
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
