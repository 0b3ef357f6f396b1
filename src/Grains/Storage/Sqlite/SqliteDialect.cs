using System.Data.Common;
using Microsoft.Data.Sqlite;
using Nightshift.Batches;
using Nightshift.Pools;
using static Nightshift.Storage.ItemSql;

namespace Nightshift.Storage.Sqlite;

/// <summary>
/// The item store on one SQLite file. SQLite has one writer at a time anyway: the group-commit queue
/// makes that writer work in bulk, claims included, one prepared statement per item; reads use their
/// own pooled connections, which WAL lets run beside the writer.
/// </summary>
internal sealed class SqliteDialect(ItemStoreOptions options) : ItemStoreDialect
{
    private static readonly string ClaimOne = $"""
        UPDATE ns_items
        SET state = {Leased}, lease_token = @token, lease_expires_at = @expires, updated_at = @now
        WHERE batch_id = @batch AND idx = (
            SELECT idx FROM ns_items
            WHERE batch_id = @batch AND state = {Pending} AND stage = @stage AND next_attempt_at <= @now
            ORDER BY next_attempt_at, idx
            LIMIT 1)
        RETURNING idx, custom_id, body, attempts, rate_limited_attempts, retry_state;
        """;

    private static readonly string RecordOne = $"""
        UPDATE ns_items
        SET state = @state, attempts = @attempts, rate_limited_attempts = @rate_limited,
            next_attempt_at = @next, retry_state = @retry_state, status_code = @status_code, stage = @stage,
            response = @response, error = @error, input_tokens = @input_tokens, output_tokens = @output_tokens, cached_tokens = @cached_tokens,
            lease_token = NULL, lease_expires_at = NULL, updated_at = @now
        WHERE batch_id = @batch AND idx = @idx AND state = {Leased} AND lease_token = @token;
        """;

    private static readonly string ExtendOne = $"""
        UPDATE ns_items SET lease_expires_at = @expires
        WHERE batch_id = @batch AND idx = @idx AND state = {Leased} AND lease_token = @token;
        """;

    /// <summary>SQLITE_CONSTRAINT: a primary key or unique index refused the row.</summary>
    private const int ConstraintViolation = 19;

    private readonly string _connectionString = ConnectionStringFor(options.Path);

    public override bool OwnedByOneProcess => options.RecoverLeasesAtStart;

    public override bool ClaimsOnOwnConnection => false;

    public override string IndexIn => "idx IN (SELECT value FROM json_each(@indices))";

    public override string ListUnfinished { get; } = $"SELECT DISTINCT batch_id FROM ns_items WHERE state IN ({Pending}, {Leased});";

    public static string ConnectionStringFor(string path) => $"Data Source={Path.GetFullPath(path)};Pooling=True;Default Timeout=30";

    public override bool IsTransient(Exception failure) => false;

    public override bool FailsAlone(Exception failure) => failure is SqliteException;

    public override async Task<DbConnection> OpenAsync(CancellationToken cancellationToken)
    {
        var connection = new SqliteConnection(_connectionString);
        await connection.OpenAsync(cancellationToken);
        return connection;
    }

    public override async Task<DbConnection> OpenWriterAsync(CancellationToken cancellationToken)
    {
        var connection = await OpenAsync(cancellationToken);

        // Per connection; see ItemStoreOptions.SyncEveryCommit for what NORMAL gives up.
        var synchronous = options.SyncEveryCommit ? "FULL" : "NORMAL";
        await connection.ExecuteAsync(null, $"PRAGMA synchronous = {synchronous};", cancellationToken);
        return connection;
    }

    protected override IReadOnlyList<string> Migrations => SqliteSchema.Migrations;

    protected override (string Type, string Now) AppliedAt => ("TEXT", "datetime('now')");

    public override Task ApplySchemaAsync(CancellationToken cancellationToken)
    {
        if (Path.GetDirectoryName(Path.GetFullPath(options.Path)) is { Length: > 0 } directory)
        {
            Directory.CreateDirectory(directory);
        }

        return base.ApplySchemaAsync(cancellationToken);
    }

    /// <summary>
    /// BEGIN IMMEDIATE takes the database's write lock before the version is read, so a second process
    /// starting at the same moment waits here and then finds the work done.
    /// </summary>
    protected override async Task<DbTransaction> BeginMigrationAsync(DbConnection connection, CancellationToken cancellationToken)
    {
        await connection.ExecuteAsync(null, "PRAGMA journal_mode = WAL;", cancellationToken);
        return ((SqliteConnection)connection).BeginTransaction(deferred: false);
    }

    /// <summary>One read transaction: in WAL mode its reads all see the same snapshot.</summary>
    public override Task<DbTransaction> BeginSnapshotAsync(DbConnection connection, CancellationToken cancellationToken) =>
        Task.FromResult<DbTransaction>(((SqliteConnection)connection).BeginTransaction(deferred: true));

    public override object Indices(IReadOnlyCollection<int> indices) => $"[{string.Join(',', indices)}]";

    public override async Task<IReadOnlyList<ClaimedItem>> ClaimAsync(GroupTransaction group, string batchId, int stage, IReadOnlyList<ItemLease> leases, long now)
    {
        // One statement per lease: each picks the first due pending item in input order and
        // stamps it with that lease's fencing token, inside the same group transaction.
        var claimed = new List<ClaimedItem>(leases.Count);
        foreach (var lease in leases)
        {
            var claim = group.Command(ClaimOne, ("@batch", batchId), ("@stage", stage), ("@token", lease.Token), ("@expires", lease.ExpiresAt.Millis()), ("@now", now));
            var item = await claim.ReadAllAsync(reader => ReadClaim(reader, lease), CancellationToken.None);
            if (item.Count == 0)
            {
                break;
            }

            claimed.Add(item[0]);
        }

        return claimed;
    }

    public override async Task<IReadOnlyList<bool>> RecordAsync(GroupTransaction group, IReadOnlyList<AttemptRecord> records)
    {
        var written = new bool[records.Count];
        for (var i = 0; i < records.Count; i++)
        {
            var record = records[i];
            written[i] = await group.Command(RecordOne, ("@batch", record.BatchId), ("@idx", record.Index), ("@token", record.LeaseToken), ("@state", (int)record.State), ("@attempts", record.Attempts),
                ("@rate_limited", record.RateLimitedAttempts), ("@next", record.NextAttemptAt?.Millis() ?? 0), ("@retry_state", record.RetryState),
                ("@status_code", record.StatusCode), ("@response", record.Response), ("@error", record.Error), ("@input_tokens", record.Usage.InputTokens),
                ("@output_tokens", record.Usage.OutputTokens), ("@cached_tokens", record.Usage.CachedTokens), ("@stage", record.Stage), ("@now", record.At.Millis())).ExecuteNonQueryAsync(CancellationToken.None) == 1;
        }

        return written;
    }

    public override async Task<IReadOnlySet<ClaimKey>> ExtendAsync(GroupTransaction group, IReadOnlyList<LeaseExtension> leases)
    {
        var extended = new HashSet<ClaimKey>();
        foreach (var lease in leases)
        {
            var extend = group.Command(ExtendOne, ("@batch", lease.BatchId), ("@idx", lease.Index), ("@token", lease.Token), ("@expires", lease.ExpiresAt.Millis()));
            if (await extend.ExecuteNonQueryAsync(CancellationToken.None) == 1)
            {
                extended.Add(lease.Claim);
            }
        }

        return extended;
    }

    public override Task<IItemIngestSession> BeginIngestAsync(DbConnection connection, string batchId, string pool, long now, CancellationToken cancellationToken) =>
        Task.FromResult<IItemIngestSession>(new IngestSession(batchId, pool, (SqliteConnection)connection, now));

    /// <summary>
    /// Stages the upload in a temporary table private to its connection, so a slow or huge upload
    /// never holds the database's write lock (which would stall every running batch); the items move
    /// into ns_items in one short transaction at commit, with the batch's catalogue row.
    /// </summary>
    private sealed class IngestSession : ItemIngest, IItemIngestSession
    {
        private readonly SqliteConnection _connection;
        private readonly SqliteTransaction _staging;
        private readonly SqliteCommand _insert;

        public IngestSession(string batchId, string pool, SqliteConnection connection, long now)
            : base(batchId, pool, now)
        {
            _connection = connection;
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

        public async ValueTask<LineError?> AddAsync(ItemRequest item, CancellationToken cancellationToken)
        {
            if (await _insert.Bind(("@idx", item.Index), ("@custom_id", item.CustomId), ("@method", item.Method), ("@url", item.Url), ("@body", item.Body))
                .ExecuteNonQueryAsync(cancellationToken) == 1)
            {
                Added++;
                return null;
            }

            const string First = "SELECT idx FROM temp.ns_ingest WHERE custom_id = @custom_id;";
            var first = await _connection.ScalarAsync(_staging, First, cancellationToken, ("@custom_id", item.CustomId));
            return Duplicate(item, (long)first!);
        }

        public async Task CommitAsync(BatchOptions options, string? fingerprint, CancellationToken cancellationToken)
        {
            await _staging.CommitAsync(cancellationToken);

            // The only moment the upload holds the write lock: one INSERT … SELECT of staged rows.
            await using var publish = _connection.BeginTransaction(deferred: false);
            try
            {
                await _connection.ExecuteAsync(publish, $"""
                    INSERT INTO ns_items (batch_id, idx, custom_id, method, url, body, updated_at)
                    SELECT @batch, idx, custom_id, method, url, body, @now FROM temp.ns_ingest ORDER BY idx;
                    {InsertBatch}
                    """, cancellationToken, BatchRow(options, fingerprint));
            }
            catch (SqliteException taken) when (taken.SqliteErrorCode == ConstraintViolation)
            {
                // The write lock serialized two ingests of one id: the other committed first.
                throw new BatchExistsException(BatchId, taken);
            }

            await publish.CommitAsync(cancellationToken);
        }

        public async ValueTask DisposeAsync()
        {
            // Disposing the staging transaction rolls it back if it was never committed.
            await _insert.DisposeAsync();
            await _staging.DisposeAsync();
            await _connection.ExecuteAsync(null, "DROP TABLE IF EXISTS temp.ns_ingest;", CancellationToken.None);
            await _connection.DisposeAsync();
        }
    }
}
