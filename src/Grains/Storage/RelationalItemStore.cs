using System.Data;
using System.Data.Common;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Nightshift.Batches;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Storage.Postgres;
using Nightshift.Storage.Sqlite;
using static Nightshift.Storage.ItemSql;

namespace Nightshift.Storage;

/// <summary>
/// The item store over <see cref="System.Data.Common"/>, on the SQLite file or the PostgreSQL database
/// <see cref="ItemStoreOptions"/> names: the statements both share, and a dialect for what differs.
/// Writes go through a <see cref="GroupCommitQueue"/>; reads use pooled connections of their own.
/// Every operation rides out a restarting server where the database has one (<see cref="StoreRetry"/>).
/// </summary>
public sealed class RelationalItemStore : IItemStore, IAsyncDisposable
{
    private const string SnapshotColumns = "SELECT idx, state, lease_token, input_tokens, output_tokens, cached_tokens FROM ns_items WHERE batch_id = @batch AND";

    private static readonly string RequeueExpired = Requeue($"batch_id = @batch AND state = {Leased} AND lease_expires_at < @now");
    private static readonly string RequeueAll = Requeue($"state = {Leased}");

    private static readonly string Release = $"""
        UPDATE ns_items
        SET state = {Pending}, lease_token = NULL, lease_expires_at = NULL, interruptions = interruptions + @interrupted, updated_at = @now
        WHERE batch_id = @batch AND idx = @idx AND state = {Leased} AND lease_token = @token;
        """;

    private static readonly string CancelPending = $"""
        UPDATE ns_items SET state = {Cancelled}, error = 'cancelled', updated_at = @now
        WHERE batch_id = @batch AND state = {Pending};
        """;

    private readonly ItemStoreOptions _options;
    private readonly TimeProvider _time;
    private readonly ItemStoreDialect _dialect;
    private readonly StoreRetry _retry;
    private readonly GroupCommitQueue _writer;

    /// <summary>
    /// Where the dialect says so, claims commit on their own connection: a freed slot waits for its next
    /// item's claim, and that wait must not include a group of results being written.
    /// </summary>
    private readonly GroupCommitQueue _claims;

    private readonly Func<GroupTransaction, IReadOnlyList<AttemptRecord>, Task<IReadOnlyList<bool>>> _recordAll;
    private readonly Lock _initializing = new();
    private Task? _initialization;

    /// <summary>A store on the database <paramref name="options"/> names.</summary>
    public RelationalItemStore(IOptions<ItemStoreOptions> options, TimeProvider time, ILogger<RelationalItemStore> logger)
    {
        _options = options.Value;
        _time = time;
        _dialect = _options.UsesPostgres ? new PostgresDialect(_options.ConnectionString) : new SqliteDialect(_options);
        _retry = new StoreRetry(_dialect.IsTransient, _options.UsesPostgres ? _options.OutageTolerance : TimeSpan.Zero, time, logger);
        _writer = new GroupCommitQueue(_dialect.OpenWriterAsync, _dialect.FailsAlone, _retry);
        _claims = _dialect.ClaimsOnOwnConnection ? new GroupCommitQueue(_dialect.OpenWriterAsync, _dialect.FailsAlone, _retry) : _writer;
        _recordAll = RecordAllAsync;
    }

    public bool OwnedByOneProcess => _dialect.OwnedByOneProcess;

    /// <summary>
    /// Applies the schema once: calls that overlap (a one-shot run staging its file while its silo starts) share
    /// one application, and one that failed is tried again by the next call.
    /// </summary>
    public Task InitializeAsync(CancellationToken cancellationToken)
    {
        lock (_initializing)
        {
            if (_initialization is null || _initialization.IsFaulted || _initialization.IsCanceled)
            {
                // Run apart from the lock: SQLite's calls complete synchronously, and the other caller must not wait on the lock meanwhile.
                _initialization = Task.Run(() => _retry.RunAsync(async token =>
                {
                    await _dialect.ApplySchemaAsync(token);
                    return true;
                }, cancellationToken), cancellationToken);
            }

            return _initialization.WaitAsync(cancellationToken);
        }
    }

    public async Task<IItemIngestSession> BeginIngestAsync(string batchId, string pool, CancellationToken cancellationToken)
    {
        var connection = await _retry.RunAsync(_dialect.OpenAsync, cancellationToken);
        try
        {
            return await _dialect.BeginIngestAsync(connection, batchId, pool, Now(), cancellationToken);
        }
        catch
        {
            await connection.DisposeAsync();
            throw;
        }
    }

    public Task<IReadOnlyList<ClaimedItem>> ClaimAsync(string batchId, int stage, IReadOnlyList<ItemLease> leases, DateTimeOffset now, CancellationToken cancellationToken) =>
        _claims.RunAsync(group => _dialect.ClaimAsync(group, batchId, stage, leases, now.Millis()), cancellationToken);

    /// <summary>
    /// Queues the attempt for the next group of writes: all results waiting at that moment are written
    /// in one call of the dialect (one statement on PostgreSQL) in one commit.
    /// </summary>
    public Task<bool> RecordAttemptAsync(AttemptRecord record, CancellationToken cancellationToken) => _writer.RunSharedAsync(_recordAll, record, cancellationToken);

    public async Task<int> RequeueAllLeasesAsync(CancellationToken cancellationToken) =>
        (await _writer.RunAsync(group => group.Command(RequeueAll, ("@now", Now()), ("@max_interruptions", _options.MaxInterruptions))
            .ReadAllAsync(reader => reader.GetInt32(0), CancellationToken.None), cancellationToken)).Count;

    public Task<IReadOnlyList<RequeuedItem>> RequeueExpiredLeasesAsync(string batchId, DateTimeOffset now, CancellationToken cancellationToken) =>
        _writer.RunAsync<IReadOnlyList<RequeuedItem>>(group => group
            .Command(RequeueExpired, ("@batch", batchId), ("@now", now.Millis()), ("@max_interruptions", _options.MaxInterruptions))
            .ReadAllAsync(reader => new RequeuedItem(reader.GetInt32(0), reader.GetInt32(1) == Failed), CancellationToken.None), cancellationToken);

    public Task<IReadOnlySet<ClaimKey>> ExtendLeasesAsync(IReadOnlyList<LeaseExtension> leases, CancellationToken cancellationToken) =>
        _writer.RunAsync(group => _dialect.ExtendAsync(group, leases), cancellationToken);

    public Task<bool> ReleaseLeaseAsync(string batchId, int index, long leaseToken, bool interrupted, CancellationToken cancellationToken) =>
        _writer.RunAsync(async group => await group.Command(Release, ("@batch", batchId), ("@idx", index), ("@token", leaseToken), ("@interrupted", interrupted ? 1 : 0), ("@now", Now())).ExecuteNonQueryAsync(CancellationToken.None) == 1, cancellationToken);

    public Task<int> RequeueTerminalAsync(string batchId, ItemRetryFilter filter, string? pool, CancellationToken cancellationToken)
    {
        // Built before it is queued: a bad filter must fail this call alone, not the group it would join.
        var requeue = $"""
            UPDATE ns_items
            SET state = {Pending}, attempts = 0, rate_limited_attempts = 0, interruptions = 0, next_attempt_at = 0, retry_state = NULL, stage = 0,
                lease_token = NULL, lease_expires_at = NULL, updated_at = @now
            WHERE batch_id = @batch AND {Picked(filter)};
            """;
        return _writer.RunAsync(async group =>
        {
            var requeued = await group.Command(requeue, ("@batch", batchId), ("@now", Now())).ExecuteNonQueryAsync(CancellationToken.None);
            if (pool is not null)
            {
                await group.Command("UPDATE ns_batches SET pool = @pool WHERE batch_id = @batch;", ("@batch", batchId), ("@pool", pool)).ExecuteNonQueryAsync(CancellationToken.None);
            }

            return requeued;
        }, cancellationToken);
    }

    /// <summary>The items a retry picks, as the results name their error codes (<see cref="Results.BatchOutputWriter"/>).</summary>
    private static string Picked(ItemRetryFilter filter)
    {
        const string Invalid = $"error LIKE '{Results.BatchOutputWriter.ValidationFailed}:%'";
        var states = filter.State is { } state ? $"state = {(int)state}" : $"state IN ({Failed}, {Cancelled})";
        return filter.ErrorCode switch
        {
            null => states,
            Results.BatchOutputWriter.ValidationFailed => $"{states} AND state = {Failed} AND {Invalid}",
            Results.BatchOutputWriter.Failed => $"{states} AND state = {Failed} AND (error IS NULL OR NOT {Invalid})",
            Results.BatchOutputWriter.Cancelled => $"{states} AND state = {Cancelled}",
            var unknown => throw new ArgumentException($"errorCode: '{unknown}' is not {Results.BatchOutputWriter.ErrorCodes}", nameof(filter)),
        };
    }

    public Task LogAttemptAsync(string batchId, int index, long leaseToken, AttemptLog log, CancellationToken cancellationToken) =>
        _writer.RunAsync(async group =>
        {
            await _dialect.LogAttemptsAsync(group, [(batchId, index, leaseToken, log)]);
            return true;
        }, cancellationToken);

    public async Task<ItemHistory?> GetItemHistoryAsync(string batchId, string customId, CancellationToken cancellationToken)
    {
        var items = await ReadRowsAsync("""
            SELECT idx, state, attempts, rate_limited_attempts, interruptions, status_code, error, input_tokens, output_tokens, cached_tokens
            FROM ns_items WHERE batch_id = @batch AND custom_id = @custom;
            """, reader => (Index: reader.GetInt32(0), State: (ItemState)reader.GetInt32(1), Attempts: reader.GetInt32(2), RateLimited: reader.GetInt32(3),
                Interruptions: reader.GetInt32(4), Status: reader.IsDBNull(5) ? (int?)null : reader.GetInt32(5), Error: reader.IsDBNull(6) ? null : reader.GetString(6),
                Usage: new TokenUsage(reader.GetInt64(7), reader.GetInt64(8), reader.GetInt64(9))), cancellationToken, ("@batch", batchId), ("@custom", customId));
        if (items.Count == 0)
        {
            return null;
        }

        var item = items[0];
        var history = await ReadRowsAsync($"""
            SELECT {AttemptColumns} FROM ns_attempts WHERE batch_id = @batch AND idx = @idx ORDER BY started_at, lease_token;
            """, reader => new AttemptLog(DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(3)), TimeSpan.FromMilliseconds(reader.GetInt64(4)),
                reader.GetString(5), reader.GetString(6), reader.GetString(7), reader.IsDBNull(8) ? null : (int)reader.GetInt64(8), reader.IsDBNull(9) ? null : reader.GetString(9),
                new TokenUsage(reader.GetInt64(10), reader.GetInt64(11), reader.GetInt64(12)), reader.GetInt64(13) != 0, reader.GetInt64(14)),
            cancellationToken, ("@batch", batchId), ("@idx", item.Index));
        return new ItemHistory(item.Index, customId, item.State, item.Attempts, item.RateLimited, item.Interruptions, item.Status, item.Error, item.Usage, history);
    }

    public async Task<MaybeBilled> GetMaybeBilledAsync(string batchId, CancellationToken cancellationToken) =>
        (await ReadRowsAsync("""
            SELECT COUNT(*), CAST(COALESCE(SUM(estimated_tokens), 0) AS bigint) FROM ns_attempts WHERE batch_id = @batch AND maybe_billed = 1;
            """, reader => new MaybeBilled(reader.GetInt64(0), reader.GetInt64(1)), cancellationToken, ("@batch", batchId)))[0];

    public Task EnqueueWebhookAsync(WebhookDelivery delivery, CancellationToken cancellationToken) =>
        _writer.RunAsync(group => EnqueueAsync(group, delivery), cancellationToken);

    /// <summary>Adds a delivery to the outbox in <paramref name="group"/>'s transaction; one already there (a write run again) stays as it is.</summary>
    private static Task<int> EnqueueAsync(GroupTransaction group, WebhookDelivery delivery) =>
        group.Command("""
            INSERT INTO ns_webhooks (batch_id, run, item, event, url, next_attempt_at, created_at) VALUES (@batch, @run, @item, @event, @url, @now, @now)
            ON CONFLICT (batch_id, run, item) DO NOTHING;
            """, ("@batch", delivery.BatchId), ("@run", delivery.Run), ("@item", delivery.Item), ("@event", delivery.Event), ("@url", delivery.Url),
            ("@now", delivery.CreatedAt.Millis())).ExecuteNonQueryAsync(CancellationToken.None);

    public async Task<IReadOnlyList<WebhookDelivery>> ClaimWebhooksAsync(DateTimeOffset now, DateTimeOffset until, int max, CancellationToken cancellationToken)
    {
        // Most polls find nothing due: a read first, which takes no write lock.
        var due = $"state = {(int)WebhookState.Pending} AND next_attempt_at <= @now";
        if ((await ReadRowsAsync($"SELECT 1 FROM ns_webhooks WHERE {due} LIMIT 1;", _ => true, cancellationToken, ("@now", now.Millis()))).Count == 0)
        {
            return [];
        }

        // The outer condition again: a process that claimed the same rows first leaves them no longer due.
        return await _writer.RunAsync(group => group.Command($"""
            UPDATE ns_webhooks SET next_attempt_at = @until, attempts = attempts + 1
            WHERE {due} AND (batch_id, run, item) IN (SELECT batch_id, run, item FROM ns_webhooks WHERE {due} ORDER BY next_attempt_at LIMIT @max)
            RETURNING batch_id, run, event, url, attempts, created_at, item;
            """, ("@now", now.Millis()), ("@until", until.Millis()), ("@max", max))
            .ReadAllAsync(reader => new WebhookDelivery(reader.GetString(0), (int)reader.GetInt64(1), reader.GetString(2), reader.GetString(3),
                (int)reader.GetInt64(4), DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(5)), (int)reader.GetInt64(6)), CancellationToken.None), cancellationToken);
    }

    public Task RecordWebhookAsync(string batchId, int run, int item, WebhookState state, DateTimeOffset nextAttemptAt, string? error, CancellationToken cancellationToken) =>
        _writer.RunAsync(group => group.Command($"""
            UPDATE ns_webhooks SET state = @state, next_attempt_at = @next, last_error = @error,
                delivered_at = CASE WHEN @state = {(int)WebhookState.Delivered} THEN @now ELSE delivered_at END
            WHERE batch_id = @batch AND run = @run AND item = @item;
            """, ("@batch", batchId), ("@run", run), ("@item", item), ("@state", (int)state), ("@next", nextAttemptAt.Millis()), ("@error", error), ("@now", Now()))
            .ExecuteNonQueryAsync(CancellationToken.None), cancellationToken);

    public Task<IReadOnlyList<WebhookStatus>> ListWebhooksAsync(string batchId, CancellationToken cancellationToken) =>
        ReadRowsAsync("SELECT run, event, state, attempts, created_at, delivered_at, last_error, item FROM ns_webhooks WHERE batch_id = @batch ORDER BY run, item;",
            reader => new WebhookStatus((int)reader.GetInt64(0), reader.GetString(1), (WebhookState)reader.GetInt64(2), (int)reader.GetInt64(3),
                DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4)), reader.IsDBNull(5) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(5)),
                reader.IsDBNull(6) ? null : reader.GetString(6), (int)reader.GetInt64(7)), cancellationToken, ("@batch", batchId));

    public Task<int> CancelPendingAsync(string batchId, CancellationToken cancellationToken) =>
        _writer.RunAsync(group => group.Command(CancelPending, ("@batch", batchId), ("@now", Now())).ExecuteNonQueryAsync(CancellationToken.None), cancellationToken);

    public Task SetBatchStateAsync(string batchId, BatchState state, DateTimeOffset? finishedAt, CancellationToken cancellationToken) =>
        _writer.RunAsync(group => group.Command("UPDATE ns_batches SET state = @state, finished_at = @finished WHERE batch_id = @batch;",
            ("@batch", batchId), ("@state", (int)state), ("@finished", finishedAt?.Millis())).ExecuteNonQueryAsync(CancellationToken.None), cancellationToken);

    public Task RegisterPoolAsync(string name, CancellationToken cancellationToken) =>
        _writer.RunAsync(group => group.Command("INSERT INTO ns_pools (name, created_at) VALUES (@name, @now) ON CONFLICT (name) DO NOTHING;",
            ("@name", name), ("@now", Now())).ExecuteNonQueryAsync(CancellationToken.None), cancellationToken);

    public Task<ItemCounts> CountAsync(string batchId, CancellationToken cancellationToken) =>
        ReadAsync((connection, token) => CountAsync(connection, null, batchId, token), cancellationToken);

    public Task<BatchProgress> ReadProgressAsync(string batchId, CancellationToken cancellationToken) =>
        ReadAsync(async (connection, token) =>
        {
            // One snapshot for both reads, so an item that finishes between them is neither counted twice nor lost.
            await using var snapshot = await _dialect.BeginSnapshotAsync(connection, token);
            var counts = await CountAsync(connection, snapshot, batchId, token);
            var leased = await RowsAsync(connection, snapshot, $"{SnapshotColumns} state = {Leased};", ReadSnapshot, token, ("@batch", batchId));
            await snapshot.CommitAsync(token);
            return new BatchProgress(counts, leased);
        }, cancellationToken);

    public Task<IReadOnlyList<ItemSnapshot>> GetItemsAsync(string batchId, IReadOnlyCollection<int> indices, CancellationToken cancellationToken) =>
        ReadRowsAsync<ItemSnapshot>($"{SnapshotColumns} {_dialect.IndexIn};", ReadSnapshot, cancellationToken, ("@batch", batchId), ("@indices", _dialect.Indices(indices)));

    public async Task<DateTimeOffset?> NextDueAsync(string batchId, int stage, CancellationToken cancellationToken) =>
        (await ReadRowsAsync<DateTimeOffset?>($"SELECT MIN(next_attempt_at) FROM ns_items WHERE batch_id = @batch AND state = {Pending} AND stage = @stage;",
            reader => reader.IsDBNull(0) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(0)), cancellationToken, ("@batch", batchId), ("@stage", stage)))[0];

    public async Task<IReadOnlyDictionary<int, long>> CountUnfinishedByStageAsync(string batchId, CancellationToken cancellationToken) =>
        (await ReadRowsAsync($"SELECT stage, COUNT(*) FROM ns_items WHERE batch_id = @batch AND state IN ({Pending}, {Leased}) GROUP BY stage;",
            reader => (Stage: reader.GetInt32(0), Count: reader.GetInt64(1)), cancellationToken, ("@batch", batchId))).ToDictionary(row => row.Stage, row => row.Count);

    public Task<IReadOnlyList<string>> ListUnfinishedBatchesAsync(CancellationToken cancellationToken) => ReadRowsAsync(_dialect.ListUnfinished, reader => reader.GetString(0), cancellationToken);

    public Task<IReadOnlyList<string>> ListPoolsAsync(CancellationToken cancellationToken) => ReadRowsAsync("SELECT name FROM ns_pools ORDER BY name;", reader => reader.GetString(0), cancellationToken);

    public Task<IReadOnlyList<BatchRecord>> ListBatchesAsync(BatchState? state, int offset, int limit, CancellationToken cancellationToken, string? team = null)
    {
        string[] filters = [.. state is null ? [] : new[] { "state = @state" }, .. team is null ? [] : new[] { "owner_team = @team" }];
        return ReadRowsAsync($"""
            SELECT {BatchColumns} FROM ns_batches
            {(filters.Length == 0 ? "" : "WHERE " + string.Join(" AND ", filters))}
            ORDER BY created_at DESC, batch_id LIMIT @limit OFFSET @offset;
            """, ReadBatch, cancellationToken, ("@state", (int?)state ?? 0), ("@team", team), ("@limit", limit), ("@offset", offset));
    }

    public async Task<StoredBatch?> GetBatchAsync(string batchId, CancellationToken cancellationToken) =>
        (await ReadRowsAsync($"""
            SELECT {BatchColumns}, options, fingerprint FROM ns_batches WHERE batch_id = @batch;
            """, reader => new StoredBatch(ReadBatch(reader), reader.IsDBNull(8) ? null : JsonSerializer.Deserialize<BatchOptions>(reader.GetString(8)),
                reader.IsDBNull(9) ? null : reader.GetString(9)), cancellationToken, ("@batch", batchId))).SingleOrDefault();

    private const string BatchColumns = "batch_id, pool, item_count, state, created_at, finished_at, owner_user, owner_team";

    private static BatchRecord ReadBatch(DbDataReader reader) => new(reader.GetString(0), reader.GetString(1), reader.GetInt32(2), (BatchState)reader.GetInt32(3),
        DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(4)), reader.IsDBNull(5) ? null : DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(5)),
        reader.IsDBNull(6) && reader.IsDBNull(7) ? null : new BatchOwner(reader.IsDBNull(6) ? null : reader.GetString(6), reader.IsDBNull(7) ? null : reader.GetString(7)));

    /// <remarks>A read on its own snapshot: the pool's batches through the catalogue, each batch's items through the primary key.</remarks>
    public async Task<TokenTotals> GetPoolUsageAsync(string pool, CancellationToken cancellationToken) =>
        (await ReadRowsAsync("""
            SELECT CAST(COALESCE(SUM(i.input_tokens), 0) AS bigint), CAST(COALESCE(SUM(i.output_tokens), 0) AS bigint), CAST(COALESCE(SUM(i.cached_tokens), 0) AS bigint)
            FROM ns_batches b JOIN ns_items i ON i.batch_id = b.batch_id
            WHERE b.pool = @pool;
            """, reader => new TokenTotals(reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2)), cancellationToken, ("@pool", pool)))[0];

    public async Task<ItemResult?> GetResultAsync(string batchId, int index, CancellationToken cancellationToken) =>
        (await ReadRowsAsync($"SELECT {ResultColumns} FROM ns_items WHERE batch_id = @batch AND idx = @idx AND state >= {Succeeded};", ReadResult,
            cancellationToken, ("@batch", batchId), ("@idx", index))).SingleOrDefault();

    private const string ResultColumns = "idx, custom_id, state, status_code, response, error";

    private static ItemResult ReadResult(DbDataReader reader) => new(reader.GetInt32(0), reader.GetString(1), (ItemState)reader.GetInt32(2),
        reader.IsDBNull(3) ? null : reader.GetInt32(3), reader.IsDBNull(4) ? null : reader.GetString(4), reader.IsDBNull(5) ? null : reader.GetString(5));

    /// <summary>Streams straight from the server's cursor: memory stays flat however many results there are.</summary>
    public async IAsyncEnumerable<ItemResult> ReadResultsAsync(string batchId, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await using var connection = await _retry.RunAsync(_dialect.OpenAsync, cancellationToken);
        await using var command = connection.Command(null, $"""
            SELECT {ResultColumns}
            FROM ns_items WHERE batch_id = @batch AND state >= {Succeeded} ORDER BY idx;
            """, [("@batch", batchId)]);
        await using var reader = await command.ExecuteReaderAsync(CommandBehavior.SequentialAccess, cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            var index = reader.GetInt32(0);
            var customId = reader.GetString(1);
            var state = (ItemState)reader.GetInt32(2);
            int? statusCode = await reader.IsDBNullAsync(3, cancellationToken) ? null : reader.GetInt32(3);
            var response = await reader.IsDBNullAsync(4, cancellationToken) ? null : reader.GetString(4);
            var error = await reader.IsDBNullAsync(5, cancellationToken) ? null : reader.GetString(5);
            yield return new ItemResult(index, customId, state, statusCode, response, error);
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _writer.DisposeAsync();
        if (_claims != _writer)
        {
            await _claims.DisposeAsync();
        }

        await _dialect.DisposeAsync();
    }

    private static async Task<ItemCounts> CountAsync(DbConnection connection, DbTransaction? transaction, string batchId, CancellationToken cancellationToken)
    {
        var perState = new long[5];
        long input = 0, output = 0, cached = 0;
        await RowsAsync(connection, transaction, """
            SELECT state, COUNT(*), CAST(SUM(input_tokens) AS bigint), CAST(SUM(output_tokens) AS bigint), CAST(SUM(cached_tokens) AS bigint)
            FROM ns_items WHERE batch_id = @batch GROUP BY state;
            """, reader =>
        {
            perState[reader.GetInt32(0)] = reader.GetInt64(1);
            input += reader.GetInt64(2);
            output += reader.GetInt64(3);
            cached += reader.GetInt64(4);
            return true;
        }, cancellationToken, ("@batch", batchId));
        return new ItemCounts(perState[Pending], perState[Leased], perState[Succeeded], perState[Failed], perState[Cancelled], input, output, cached);
    }

    /// <summary>
    /// Requeues the leased items <paramref name="where"/> selects, or fails those interrupted
    /// @max_interruptions times; returns each item's index and new state.
    /// </summary>
    private static string Requeue(string where) => $"""
        UPDATE ns_items
        SET state = CASE WHEN interruptions + 1 >= @max_interruptions THEN {Failed} ELSE {Pending} END,
            error = CASE WHEN interruptions + 1 >= @max_interruptions
                THEN 'interrupted ' || (interruptions + 1) || ' times by the death of the process running it; not tried again (Nightshift:Store:MaxInterruptions)'
                ELSE error END,
            lease_token = NULL, lease_expires_at = NULL, interruptions = interruptions + 1, updated_at = @now
        WHERE {where}
        RETURNING idx, state;
        """;

    /// <summary>The dialect's grouped results, and the attempts among them into their items' histories (a result fenced off as discarded).</summary>
    private async Task<IReadOnlyList<bool>> RecordAllAsync(GroupTransaction group, IReadOnlyList<AttemptRecord> records)
    {
        var written = await _dialect.RecordAsync(group, records);

        // An item's failure is announced if, and only if, it is written: in the same transaction.
        foreach (var (record, _) in records.Zip(written).Where(entry => entry.Second && entry.First.Webhook is not null))
        {
            await EnqueueAsync(group, record.Webhook!);
        }

        var logged = records.Select((record, i) => (record, written: written[i])).Where(entry => entry.record.Log is not null)
            .Select(entry => (entry.record.BatchId, entry.record.Index, entry.record.LeaseToken,
                entry.written ? entry.record.Log! : entry.record.Log! with { Outcome = AttemptOutcomes.Discarded, MaybeBilled = true }))
            .ToList();
        if (logged.Count > 0)
        {
            await _dialect.LogAttemptsAsync(group, logged);
        }

        return written;
    }

    private static ItemSnapshot ReadSnapshot(DbDataReader reader) =>
        new(reader.GetInt32(0), (ItemState)reader.GetInt32(1), reader.IsDBNull(2) ? null : reader.GetInt64(2), reader.GetInt64(3), reader.GetInt64(4), reader.GetInt64(5));

    private static async Task<IReadOnlyList<T>> RowsAsync<T>(DbConnection connection, DbTransaction? transaction, string sql, Func<DbDataReader, T> read,
        CancellationToken cancellationToken, params (string Name, object? Value)[] parameters)
    {
        await using var command = connection.Command(transaction, sql, parameters);
        return await command.ReadAllAsync(read, cancellationToken);
    }

    private Task<T> ReadAsync<T>(Func<DbConnection, CancellationToken, Task<T>> read, CancellationToken cancellationToken) =>
        _retry.RunAsync(async token =>
        {
            await using var connection = await _dialect.OpenAsync(token);
            return await read(connection, token);
        }, cancellationToken);

    private async Task<IReadOnlyList<T>> ReadRowsAsync<T>(string sql, Func<DbDataReader, T> read, CancellationToken cancellationToken, params (string Name, object? Value)[] parameters) =>
        await ReadAsync((connection, token) => RowsAsync(connection, null, sql, read, token, parameters), cancellationToken);

    private long Now() => _time.GetUtcNow().Millis();
}
