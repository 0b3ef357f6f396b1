using System.Data.Common;
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

    /// <summary>Creates or migrates the database's schema (idempotent, safe for processes starting at once).</summary>
    public abstract Task ApplySchemaAsync(CancellationToken cancellationToken);

    /// <summary>A read-only transaction whose reads all see one snapshot.</summary>
    public abstract Task<DbTransaction> BeginSnapshotAsync(DbConnection connection, CancellationToken cancellationToken);

    /// <summary>The value bound to @indices for <see cref="IndexIn"/>.</summary>
    public abstract object Indices(IReadOnlyCollection<int> indices);

    /// <summary>Claims the first due pending items in input order, one per lease, and answers them in input order.</summary>
    public abstract Task<IReadOnlyList<ClaimedItem>> ClaimAsync(GroupTransaction group, string batchId, IReadOnlyList<ItemLease> leases, long now);

    /// <summary>
    /// Writes the results, each fenced on its lease token: a result from a lease that was lost (expired,
    /// then handed to another attempt) matches no row and is discarded. Answers, per record, whether it was written.
    /// </summary>
    public abstract Task<IReadOnlyList<bool>> RecordAsync(GroupTransaction group, IReadOnlyList<AttemptRecord> records);

    /// <summary>Extends the leases still held under their tokens (fenced like a result); answers the tokens extended.</summary>
    public abstract Task<IReadOnlySet<long>> ExtendAsync(GroupTransaction group, IReadOnlyList<LeaseExtension> leases);

    public abstract Task<IItemIngestSession> BeginIngestAsync(DbConnection connection, string batchId, string pool, long now, CancellationToken cancellationToken);

    public virtual ValueTask DisposeAsync() => ValueTask.CompletedTask;

    /// <summary>
    /// Applies the migrations not yet recorded in ns_schema_version, inside <paramref name="transaction"/>,
    /// which the caller has made exclusive. A released migration is never edited; a change is a new one.
    /// </summary>
    protected static async Task MigrateAsync(DbConnection connection, DbTransaction transaction, IReadOnlyList<string> migrations, string timeType, string now, CancellationToken cancellationToken)
    {
        await using var create = connection.CreateCommand();
        create.Transaction = transaction;
        create.CommandText = $"CREATE TABLE IF NOT EXISTS ns_schema_version (version integer NOT NULL PRIMARY KEY, applied_at {timeType} NOT NULL);";
        await create.ExecuteNonQueryAsync(cancellationToken);
        create.CommandText = "SELECT COALESCE(MAX(version), 0) FROM ns_schema_version;";
        var current = Convert.ToInt32(await create.ExecuteScalarAsync(cancellationToken), System.Globalization.CultureInfo.InvariantCulture);
        if (current > migrations.Count)
        {
            throw new InvalidOperationException(
                $"The database is at schema version {current}, newer than this build's {migrations.Count}. Run a newer Nightshift.");
        }

        for (var version = current + 1; version <= migrations.Count; version++)
        {
            // Without parameters, so the script goes to the database as written.
            await using var migrate = connection.CreateCommand();
            migrate.Transaction = transaction;
            migrate.CommandText = migrations[version - 1];
            await migrate.ExecuteNonQueryAsync(cancellationToken);
            create.CommandText = $"INSERT INTO ns_schema_version (version, applied_at) VALUES (@version, {now});";
            await create.Bind(("@version", version)).ExecuteNonQueryAsync(cancellationToken);
        }
    }
}

/// <summary>Item states as the SQL spells them, and the statements both databases share word for word.</summary>
internal static class ItemSql
{
    public const int Pending = (int)ItemState.Pending;
    public const int Leased = (int)ItemState.Leased;
    public const int Succeeded = (int)ItemState.Succeeded;
    public const int Failed = (int)ItemState.Failed;
    public const int Cancelled = (int)ItemState.Cancelled;

    /// <summary>The batch's catalogue row, written in the ingest's own transaction.</summary>
    public const string InsertBatch = """
        INSERT INTO ns_batches (batch_id, pool, item_count, state, created_at, options, fingerprint)
        VALUES (@batch, @pool, @count, @state, @now, @options, @fingerprint);
        """;

    /// <summary>
    /// Requeues the leased items <paramref name="where"/> selects, or fails those interrupted
    /// @max_interruptions times; returns each item's index and new state.
    /// </summary>
    public static string Requeue(string where) => $"""
        UPDATE ns_items
        SET state = CASE WHEN interruptions + 1 >= @max_interruptions THEN {Failed} ELSE {Pending} END,
            error = CASE WHEN interruptions + 1 >= @max_interruptions
                THEN 'interrupted ' || (interruptions + 1) || ' times by the death of the process running it; not tried again (Nightshift:Store:MaxInterruptions)'
                ELSE error END,
            lease_token = NULL, lease_expires_at = NULL, interruptions = interruptions + 1, updated_at = @now
        WHERE {where}
        RETURNING idx, state;
        """;

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
