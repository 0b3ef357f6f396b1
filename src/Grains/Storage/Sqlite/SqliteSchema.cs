namespace Nightshift.Storage.Sqlite;

/// <summary>
/// Versioned schema of the embedded store: Nightshift's item table and the tables and queries that
/// Orleans' ADO.NET grain storage and reminders read (the query contract in shared/ORLEANS-ADONET.md,
/// sections 3 and 5), applied by <see cref="ItemStoreDialect.ApplySchemaAsync"/>. A released migration is never edited; a change is a new one.
/// </summary>
internal static class SqliteSchema
{
    public static readonly string[] Migrations =
    [
        """
        CREATE TABLE ns_items (
            batch_id              TEXT    NOT NULL,
            idx                   INTEGER NOT NULL,
            custom_id             TEXT    NOT NULL,
            method                TEXT    NOT NULL,
            url                   TEXT    NOT NULL,
            body                  TEXT    NOT NULL,
            state                 INTEGER NOT NULL DEFAULT 0,
            attempts              INTEGER NOT NULL DEFAULT 0,
            rate_limited_attempts INTEGER NOT NULL DEFAULT 0,
            interruptions         INTEGER NOT NULL DEFAULT 0,
            next_attempt_at       INTEGER NOT NULL DEFAULT 0,
            lease_token           INTEGER NULL,
            lease_expires_at      INTEGER NULL,
            retry_state           TEXT    NULL,
            status_code           INTEGER NULL,
            response              TEXT    NULL,
            error                 TEXT    NULL,
            input_tokens          INTEGER NOT NULL DEFAULT 0,
            output_tokens         INTEGER NOT NULL DEFAULT 0,
            updated_at            INTEGER NOT NULL,
            PRIMARY KEY (batch_id, idx)
        );
        CREATE UNIQUE INDEX ns_items_custom_id ON ns_items (batch_id, custom_id);
        CREATE INDEX ns_items_dispatch ON ns_items (batch_id, state, next_attempt_at, idx);

        CREATE TABLE OrleansQuery (
            QueryKey  TEXT NOT NULL PRIMARY KEY,
            QueryText TEXT NOT NULL
        );

        -- The nullable key extension is stored as '' because NULLs are distinct in a primary key.
        CREATE TABLE OrleansStorage (
            ServiceId        TEXT    NOT NULL,
            GrainType        TEXT    NOT NULL,
            GrainIdN0        INTEGER NOT NULL,
            GrainIdN1        INTEGER NOT NULL,
            GrainIdExtension TEXT    NOT NULL,
            PayloadBinary    BLOB    NULL,
            Version          INTEGER NOT NULL,
            ModifiedOn       TEXT    NOT NULL,
            PRIMARY KEY (ServiceId, GrainType, GrainIdN0, GrainIdN1, GrainIdExtension)
        );

        INSERT INTO OrleansQuery (QueryKey, QueryText) VALUES
        ('ReadFromStorageKey',
         'SELECT PayloadBinary, Version FROM OrleansStorage
          WHERE ServiceId = @ServiceId AND GrainType = @GrainTypeString
            AND GrainIdN0 = @GrainIdN0 AND GrainIdN1 = @GrainIdN1
            AND GrainIdExtension = COALESCE(@GrainIdExtensionString, '''');'),
        -- Two statements, at most one of which returns a row: a first write inserts only when no row
        -- exists; a later write updates only where the stored version still equals the grain''s ETag.
        ('WriteToStorageKey',
         'INSERT INTO OrleansStorage (ServiceId, GrainType, GrainIdN0, GrainIdN1, GrainIdExtension, PayloadBinary, Version, ModifiedOn)
          SELECT @ServiceId, @GrainTypeString, @GrainIdN0, @GrainIdN1, COALESCE(@GrainIdExtensionString, ''''), @PayloadBinary, 1, strftime(''%Y-%m-%d %H:%M:%f'', ''now'')
          WHERE @GrainStateVersion IS NULL
          ON CONFLICT DO NOTHING
          RETURNING Version AS NewGrainStateVersion;
          UPDATE OrleansStorage SET PayloadBinary = @PayloadBinary, Version = Version + 1, ModifiedOn = strftime(''%Y-%m-%d %H:%M:%f'', ''now'')
          WHERE @GrainStateVersion IS NOT NULL AND ServiceId = @ServiceId AND GrainType = @GrainTypeString
            AND GrainIdN0 = @GrainIdN0 AND GrainIdN1 = @GrainIdN1
            AND GrainIdExtension = COALESCE(@GrainIdExtensionString, '''') AND Version = @GrainStateVersion
          RETURNING Version AS NewGrainStateVersion;'),
        ('ClearStorageKey',
         'UPDATE OrleansStorage SET PayloadBinary = NULL, Version = Version + 1, ModifiedOn = strftime(''%Y-%m-%d %H:%M:%f'', ''now'')
          WHERE ServiceId = @ServiceId AND GrainType = @GrainTypeString
            AND GrainIdN0 = @GrainIdN0 AND GrainIdN1 = @GrainIdN1
            AND GrainIdExtension = COALESCE(@GrainIdExtensionString, '''') AND Version = @GrainStateVersion
          RETURNING Version;'),
        ('DeleteStorageKey',
         'DELETE FROM OrleansStorage
          WHERE ServiceId = @ServiceId AND GrainType = @GrainTypeString
            AND GrainIdN0 = @GrainIdN0 AND GrainIdN1 = @GrainIdN1
            AND GrainIdExtension = COALESCE(@GrainIdExtensionString, '''') AND Version = @GrainStateVersion
          RETURNING Version + 1;');
        """,
        """
        -- Orleans' ADO.NET reminder table (shared/ORLEANS-ADONET.md, section 5). GrainHash is the ring
        -- hash cast to a signed 32-bit integer, compared signed; Period is in milliseconds.
        CREATE TABLE OrleansRemindersTable (
            ServiceId    TEXT    NOT NULL,
            GrainId      TEXT    NOT NULL,
            ReminderName TEXT    NOT NULL,
            StartTime    TEXT    NOT NULL,
            Period       INTEGER NOT NULL,
            GrainHash    INTEGER NOT NULL,
            Version      INTEGER NOT NULL,
            PRIMARY KEY (ServiceId, GrainId, ReminderName)
        );
        CREATE INDEX OrleansRemindersTable_Ring ON OrleansRemindersTable (ServiceId, GrainHash);

        INSERT INTO OrleansQuery (QueryKey, QueryText) VALUES
        ('ReadReminderRowsKey',
         'SELECT GrainId, ReminderName, StartTime, Period, Version FROM OrleansRemindersTable
          WHERE ServiceId = @ServiceId AND GrainId = @GrainId;'),
        ('ReadReminderRowKey',
         'SELECT GrainId, ReminderName, StartTime, Period, Version FROM OrleansRemindersTable
          WHERE ServiceId = @ServiceId AND GrainId = @GrainId AND ReminderName = @ReminderName;'),
        ('ReadRangeRows1Key',
         'SELECT GrainId, ReminderName, StartTime, Period, Version FROM OrleansRemindersTable
          WHERE ServiceId = @ServiceId AND GrainHash > @BeginHash AND GrainHash <= @EndHash;'),
        ('ReadRangeRows2Key',
         'SELECT GrainId, ReminderName, StartTime, Period, Version FROM OrleansRemindersTable
          WHERE ServiceId = @ServiceId AND (GrainHash > @BeginHash OR GrainHash <= @EndHash);'),
        -- Unconditional upsert: reminders are checked against their version on delete only.
        ('UpsertReminderRowKey',
         'INSERT INTO OrleansRemindersTable (ServiceId, GrainId, ReminderName, StartTime, Period, GrainHash, Version)
          VALUES (@ServiceId, @GrainId, @ReminderName, @StartTime, @Period, @GrainHash, 0)
          ON CONFLICT (ServiceId, GrainId, ReminderName) DO UPDATE
          SET StartTime = excluded.StartTime, Period = excluded.Period, GrainHash = excluded.GrainHash, Version = Version + 1
          RETURNING Version;'),
        -- The provider wants exactly one boolean row, also when nothing matched; changes() reports the
        -- DELETE just before it on the same connection.
        ('DeleteReminderRowKey',
         'DELETE FROM OrleansRemindersTable
          WHERE ServiceId = @ServiceId AND GrainId = @GrainId AND ReminderName = @ReminderName AND Version = @Version;
          SELECT changes() > 0;'),
        ('DeleteReminderRowsKey',
         'DELETE FROM OrleansRemindersTable WHERE ServiceId = @ServiceId;');
        """,
        """
        -- The catalogue behind listings: one row per accepted batch (written in the ingest's own
        -- transaction) whose state follows the batch grain's, and one per configured pool.
        CREATE TABLE ns_batches (
            batch_id    TEXT    NOT NULL PRIMARY KEY,
            pool        TEXT    NOT NULL,
            item_count  INTEGER NOT NULL,
            state       INTEGER NOT NULL,
            created_at  INTEGER NOT NULL,
            finished_at INTEGER NULL
        );
        CREATE INDEX ns_batches_listing ON ns_batches (state, created_at DESC, batch_id);
        CREATE INDEX ns_batches_created ON ns_batches (created_at DESC, batch_id);

        CREATE TABLE ns_pools (
            name       TEXT    NOT NULL PRIMARY KEY,
            created_at INTEGER NOT NULL
        );
        """,
        """
        -- The part of input_tokens the provider served from its prompt cache (priced apart).
        ALTER TABLE ns_items ADD COLUMN cached_tokens INTEGER NOT NULL DEFAULT 0;
        -- Pool usage sums its batches' items: find them by pool.
        CREATE INDEX ns_batches_pool ON ns_batches (pool);
        """,
        ItemSql.AddBatchSpec,
        ItemSql.AddWebhooks,
        ItemSql.AddAttempts,
        ItemSql.AddOwners,
        """
        -- The pool an item runs on, as its batch's escalation list numbers them (0: the batch's own): each pool's
        -- slots claim the items of their stage, found by the dispatch index.
        ALTER TABLE ns_items ADD COLUMN stage INTEGER NOT NULL DEFAULT 0;
        DROP INDEX ns_items_dispatch;
        CREATE INDEX ns_items_dispatch ON ns_items (batch_id, state, stage, next_attempt_at, idx);
        """,
        ItemSql.AddItemWebhooks,
    ];

    /// <summary>The newest schema version this build knows.</summary>
    public static int LatestVersion => Migrations.Length;
}
