using System.Data.Common;
using System.Globalization;
using System.Text.Json;
using Nightshift.Batches;
using Nightshift.Pools;

namespace Nightshift.Storage;

/// <summary>
/// What truly differs between the databases under <see cref="RelationalItemStore"/>: connections, schema,
/// transient failures, and the statements each database runs its own way (claims, grouped results,
/// lease extension, bulk ingest).
/// </summary>
internal abstract class ItemStoreDialect : IAsyncDisposable
{
    /// <summary>See <see cref="IItemDispatch.OwnedByOneProcess"/>.</summary>
    public abstract bool OwnedByOneProcess { get; }

    /// <summary>Whether claims commit on a connection of their own, beside the other writes.</summary>
    public abstract bool ClaimsOnOwnConnection { get; }

    /// <summary>SQL true for the rows whose idx is in the @indices parameter.</summary>
    public abstract string IndexIn { get; }

    /// <summary>The batches with pending or leased items.</summary>
    public abstract string ListUnfinished { get; }

    /// <summary>Failures that another try can cure (a broken connection, a restarting server).</summary>
    public abstract bool IsTransient(Exception failure);

    /// <summary>Failures of one statement of a group, which fail that write alone.</summary>
    public abstract bool FailsAlone(Exception failure);

    public abstract Task<DbConnection> OpenAsync(CancellationToken cancellationToken);

    /// <summary>The connection of a group-commit queue.</summary>
    public virtual Task<DbConnection> OpenWriterAsync(CancellationToken cancellationToken) => OpenAsync(cancellationToken);

    /// <summary>The migrations, oldest first (version n is the n-th). A released one is never edited; a change is a new one.</summary>
    protected abstract IReadOnlyList<string> Migrations { get; }

    /// <summary>The SQL type of ns_schema_version.applied_at, and the SQL for now in it.</summary>
    protected abstract (string Type, string Now) AppliedAt { get; }

    /// <summary>
    /// The transaction to migrate in, holding the database's lock for it: processes starting at once then
    /// apply each migration once.
    /// </summary>
    protected abstract Task<DbTransaction> BeginMigrationAsync(DbConnection connection, CancellationToken cancellationToken);

    /// <summary>A read-only transaction whose reads all see one snapshot.</summary>
    public abstract Task<DbTransaction> BeginSnapshotAsync(DbConnection connection, CancellationToken cancellationToken);

    /// <summary>The value bound to @indices for <see cref="IndexIn"/>.</summary>
    public abstract object Indices(IReadOnlyCollection<int> indices);

    /// <summary>Claims the first due pending items in input order, one per lease, and answers them in input order.</summary>
    public abstract Task<IReadOnlyList<ClaimedItem>> ClaimAsync(GroupTransaction group, string batchId, int stage, IReadOnlyList<ItemLease> leases, long now);

    /// <summary>
    /// Writes the results, each fenced on its lease token: a result from a lease that was lost (expired,
    /// then handed to another attempt) matches no row and is discarded. Answers, per record, whether it was written.
    /// </summary>
    public abstract Task<IReadOnlyList<bool>> RecordAsync(GroupTransaction group, IReadOnlyList<AttemptRecord> records);

    /// <summary>Extends the leases still held under their tokens (fenced like a result); answers the tokens extended.</summary>
    public abstract Task<IReadOnlySet<ClaimKey>> ExtendAsync(GroupTransaction group, IReadOnlyList<LeaseExtension> leases);

    /// <summary>Adds attempts to their items' histories (ns_attempts), one prepared statement a row; an attempt already there is left as it is.</summary>
    public virtual async Task LogAttemptsAsync(GroupTransaction group, IReadOnlyList<(string BatchId, int Index, long Token, AttemptLog Log)> attempts)
    {
        foreach (var (batchId, index, token, log) in attempts)
        {
            await group.Command($"""
                INSERT INTO ns_attempts ({ItemSql.AttemptColumns})
                VALUES (@batch, @idx, @token, @started, @duration, @pool, @model, @outcome, @status, @error, @input, @output, @cached, @maybe, @estimated)
                ON CONFLICT DO NOTHING;
                """, ("@batch", batchId), ("@idx", index), ("@token", token), ("@started", log.StartedAt.Millis()), ("@duration", (long)log.Duration.TotalMilliseconds),
                ("@pool", log.Pool), ("@model", log.Model), ("@outcome", log.Outcome), ("@status", log.StatusCode), ("@error", log.Error), ("@input", log.Usage.InputTokens),
                ("@output", log.Usage.OutputTokens), ("@cached", log.Usage.CachedTokens), ("@maybe", log.MaybeBilled ? 1 : 0), ("@estimated", log.EstimatedTokens))
                .ExecuteNonQueryAsync(CancellationToken.None);
        }
    }

    public abstract Task<IItemIngestSession> BeginIngestAsync(DbConnection connection, string batchId, string pool, long now, CancellationToken cancellationToken);

    public virtual ValueTask DisposeAsync() => ValueTask.CompletedTask;

    /// <summary>Creates or migrates the schema: applies, under the lock, the migrations ns_schema_version lacks.</summary>
    public virtual async Task ApplySchemaAsync(CancellationToken cancellationToken)
    {
        await using var connection = await OpenAsync(cancellationToken);
        await using var transaction = await BeginMigrationAsync(connection, cancellationToken);
        var versions = "CREATE TABLE IF NOT EXISTS ns_schema_version " +
            $"(version integer NOT NULL PRIMARY KEY, applied_at {AppliedAt.Type} NOT NULL);";
        await connection.ExecuteAsync(transaction, versions, cancellationToken);
        const string Newest = "SELECT COALESCE(MAX(version), 0) FROM ns_schema_version;";
        var current = Convert.ToInt32(
            await connection.ScalarAsync(transaction, Newest, cancellationToken), CultureInfo.InvariantCulture);
        if (current > Migrations.Count)
        {
            throw new InvalidOperationException(
                $"The database is at schema version {current}, newer than this build's {Migrations.Count}. Run a newer Nightshift.");
        }

        for (var version = current + 1; version <= Migrations.Count; version++)
        {
            // Without parameters, so the script goes to the database as written.
            await connection.ExecuteAsync(transaction, Migrations[version - 1], cancellationToken);
            var applied = $"INSERT INTO ns_schema_version (version, applied_at) VALUES (@version, {AppliedAt.Now});";
            await connection.ExecuteAsync(transaction, applied, cancellationToken, ("@version", version));
        }

        await transaction.CommitAsync(cancellationToken);
    }
}

/// <summary>Item states as the SQL spells them, and what both databases share word for word.</summary>
internal static class ItemSql
{
    public const int Pending = (int)ItemState.Pending;
    public const int Leased = (int)ItemState.Leased;
    public const int Succeeded = (int)ItemState.Succeeded;
    public const int Failed = (int)ItemState.Failed;
    public const int Cancelled = (int)ItemState.Cancelled;

    /// <summary>The columns of ns_attempts, in order.</summary>
    public const string AttemptColumns =
        "batch_id, idx, lease_token, started_at, duration_ms, pool, model, outcome, status_code, error, input_tokens, output_tokens, cached_tokens, maybe_billed, estimated_tokens";

    /// <summary>A migration both databases run word for word.</summary>
    public const string AddBatchSpec = """
        -- The spec a batch was submitted with, written in the ingest's transaction, so a batch whose
        -- grain never started (its submitter died after the commit) starts from the store alone; and
        -- the fingerprint of that submission, so an idempotency key reused with another payload is refused.
        ALTER TABLE ns_batches ADD COLUMN options text NULL;
        ALTER TABLE ns_batches ADD COLUMN fingerprint text NULL;
        """;

    public const string AddWebhooks = """
        -- The webhook outbox: one row per end of a batch's run to announce (run counts the batch's runs; a retry
        -- starts the next), written before the batch's grain state says it finished, so a crash in between finds
        -- it there. next_attempt_at is also a claim: a deliverer moves it past its own attempt before it sends.
        CREATE TABLE ns_webhooks (
            batch_id        text   NOT NULL,
            run             bigint NOT NULL,
            event           text   NOT NULL,
            url             text   NOT NULL,
            state           bigint NOT NULL DEFAULT 0,
            attempts        bigint NOT NULL DEFAULT 0,
            next_attempt_at bigint NOT NULL,
            created_at      bigint NOT NULL,
            delivered_at    bigint NULL,
            last_error      text   NULL,
            PRIMARY KEY (batch_id, run)
        );
        CREATE INDEX ns_webhooks_due ON ns_webhooks (next_attempt_at) WHERE state = 0;
        """;

    public const string AddAttempts = """
        -- Every call of an item, as its history shows it: one row per claim it ran under (a claim token is
        -- unique per claim, so a group written twice adds nothing), written with the attempt's result, or
        -- alone for a call cut off with no result. maybe_billed: sent, and no answer kept.
        CREATE TABLE ns_attempts (
            batch_id         text   NOT NULL,
            idx              bigint NOT NULL,
            lease_token      bigint NOT NULL,
            started_at       bigint NOT NULL,
            duration_ms      bigint NOT NULL,
            pool             text   NOT NULL,
            model            text   NOT NULL,
            outcome          text   NOT NULL,
            status_code      bigint NULL,
            error            text   NULL,
            input_tokens     bigint NOT NULL,
            output_tokens    bigint NOT NULL,
            cached_tokens    bigint NOT NULL,
            maybe_billed     bigint NOT NULL,
            estimated_tokens bigint NOT NULL,
            PRIMARY KEY (batch_id, idx, lease_token)
        );
        """;

    public const string AddOwners = """
        -- Who submitted each batch (the API's principals): a user's listings show its team's batches only.
        ALTER TABLE ns_batches ADD COLUMN owner_user text NULL;
        ALTER TABLE ns_batches ADD COLUMN owner_team text NULL;
        CREATE INDEX ns_batches_team ON ns_batches (owner_team, created_at DESC, batch_id);
        """;

    public const string AddItemWebhooks = """
        -- Webhooks for failed items beside those for batches' ends: a delivery is keyed by its item too (-1: the batch's end).
        CREATE TABLE ns_webhooks_keyed (
            batch_id        text   NOT NULL,
            run             bigint NOT NULL,
            item            bigint NOT NULL,
            event           text   NOT NULL,
            url             text   NOT NULL,
            state           bigint NOT NULL DEFAULT 0,
            attempts        bigint NOT NULL DEFAULT 0,
            next_attempt_at bigint NOT NULL,
            created_at      bigint NOT NULL,
            delivered_at    bigint NULL,
            last_error      text   NULL,
            PRIMARY KEY (batch_id, run, item)
        );
        INSERT INTO ns_webhooks_keyed (batch_id, run, item, event, url, state, attempts, next_attempt_at, created_at, delivered_at, last_error)
            SELECT batch_id, run, -1, event, url, state, attempts, next_attempt_at, created_at, delivered_at, last_error FROM ns_webhooks;
        DROP TABLE ns_webhooks;
        ALTER TABLE ns_webhooks_keyed RENAME TO ns_webhooks;
        CREATE INDEX ns_webhooks_due ON ns_webhooks (next_attempt_at) WHERE state = 0;
        """;

    /// <summary>A claim's columns, in order: idx, custom_id, body, attempts, rate_limited_attempts, retry_state.</summary>
    public static ClaimedItem ReadClaim(DbDataReader reader, ItemLease lease) => new(reader.GetInt32(0), reader.GetString(1),
        reader.GetString(2), reader.GetInt32(3), reader.GetInt32(4), lease, reader.IsDBNull(5) ? null : reader.GetString(5));

    /// <summary>Binds each parameter, adding those the command does not have yet.</summary>
    public static DbCommand Bind(this DbCommand command, params ReadOnlySpan<(string Name, object? Value)> parameters)
    {
        foreach (var (name, value) in parameters)
        {
            var index = command.Parameters.IndexOf(name);
            if (index < 0)
            {
                var parameter = command.CreateParameter();
                parameter.ParameterName = name;
                index = command.Parameters.Add(parameter);
            }

            command.Parameters[index].Value = value ?? DBNull.Value;
        }

        return command;
    }

    /// <summary>A command for <paramref name="sql"/> in <paramref name="transaction"/>, its parameters bound.</summary>
    public static DbCommand Command(this DbConnection connection, DbTransaction? transaction, string sql,
        params ReadOnlySpan<(string Name, object? Value)> parameters)
    {
        var command = connection.CreateCommand();
        command.Transaction = transaction;
        command.CommandText = sql;
        return command.Bind(parameters);
    }

    public static async Task<int> ExecuteAsync(this DbConnection connection, DbTransaction? transaction, string sql,
        CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = connection.Command(transaction, sql, parameters);
        return await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public static async Task<object?> ScalarAsync(this DbConnection connection, DbTransaction? transaction, string sql,
        CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = connection.Command(transaction, sql, parameters);
        return await command.ExecuteScalarAsync(cancellationToken);
    }

    public static async Task<IReadOnlyList<T>> ReadAllAsync<T>(this DbCommand command, Func<DbDataReader, T> read, CancellationToken cancellationToken)
    {
        var rows = new List<T>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(read(reader));
        }

        return rows;
    }

    public static long Millis(this DateTimeOffset time) => time.ToUnixTimeMilliseconds();
}

/// <summary>What the ingests of both databases share: the items added, and the batch's catalogue row written at commit.</summary>
internal abstract class ItemIngest(string batchId, string pool, long now)
{
    /// <summary>The batch's catalogue row, written in the ingest's own transaction.</summary>
    protected const string InsertBatch = """
        INSERT INTO ns_batches (batch_id, pool, item_count, state, created_at, options, fingerprint, owner_user, owner_team)
        VALUES (@batch, @pool, @count, @state, @now, @options, @fingerprint, @owner_user, @owner_team);
        """;

    protected string BatchId => batchId;

    protected long Now => now;

    protected int Added { get; set; }

    protected static LineError Duplicate(ItemRequest item, long firstIndex) =>
        new(item.Index + 1, "custom_id", $"duplicate custom_id '{item.CustomId}' (first used on line {firstIndex + 1})");

    /// <summary>The parameters of <see cref="InsertBatch"/>: the batch, running, with the items added.</summary>
    protected (string Name, object? Value)[] BatchRow(BatchOptions options, string? fingerprint) =>
        [("@batch", batchId), ("@pool", pool), ("@count", Added), ("@state", (int)BatchState.Running), ("@now", now),
            ("@options", JsonSerializer.Serialize(options)), ("@fingerprint", fingerprint), ("@owner_user", options.Owner?.User), ("@owner_team", options.Owner?.Team)];
}
