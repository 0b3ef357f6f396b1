namespace Nightshift.Storage.Postgres;

/// <summary>
/// Versioned schema of the PostgreSQL store: Nightshift's item table and catalogue, and the tables and
/// queries Orleans' ADO.NET clustering, grain storage and reminders run (the query contract in
/// shared/ORLEANS-ADONET.md, sections 3 to 5), applied by <see cref="ItemStoreDialect.ApplySchemaAsync"/>.
/// A released migration is never edited; a change is a new one.
/// </summary>
internal static class PostgresSchema
{
    public static readonly string[] Migrations =
    [
        """
        -- Nightshift's items. Times are Unix milliseconds. Partial indexes keep the two hot lookups
        -- (the next due pending items, the leased ones) small however many items have finished.
        CREATE TABLE ns_items (
            batch_id              text     NOT NULL,
            idx                   integer  NOT NULL,
            custom_id             text     NOT NULL,
            method                text     NOT NULL,
            url                   text     NOT NULL,
            body                  text     NOT NULL,
            state                 smallint NOT NULL DEFAULT 0,
            attempts              integer  NOT NULL DEFAULT 0,
            rate_limited_attempts integer  NOT NULL DEFAULT 0,
            interruptions         integer  NOT NULL DEFAULT 0,
            next_attempt_at       bigint   NOT NULL DEFAULT 0,
            lease_token           bigint   NULL,
            lease_expires_at      bigint   NULL,
            retry_state           text     NULL,
            status_code           integer  NULL,
            response              text     NULL,
            error                 text     NULL,
            input_tokens          bigint   NOT NULL DEFAULT 0,
            output_tokens         bigint   NOT NULL DEFAULT 0,
            cached_tokens         bigint   NOT NULL DEFAULT 0,
            updated_at            bigint   NOT NULL,
            PRIMARY KEY (batch_id, idx)
        );
        CREATE UNIQUE INDEX ns_items_custom_id ON ns_items (batch_id, custom_id);
        CREATE INDEX ns_items_pending ON ns_items (batch_id, next_attempt_at, idx) WHERE state = 0;
        CREATE INDEX ns_items_leased ON ns_items (batch_id, lease_expires_at) WHERE state = 1;

        CREATE TABLE ns_batches (
            batch_id    text     NOT NULL PRIMARY KEY,
            pool        text     NOT NULL,
            item_count  integer  NOT NULL,
            state       smallint NOT NULL,
            created_at  bigint   NOT NULL,
            finished_at bigint   NULL
        );
        CREATE INDEX ns_batches_listing ON ns_batches (state, created_at DESC, batch_id);
        CREATE INDEX ns_batches_created ON ns_batches (created_at DESC, batch_id);
        CREATE INDEX ns_batches_pool ON ns_batches (pool);

        CREATE TABLE ns_pools (
            name       text   NOT NULL PRIMARY KEY,
            created_at bigint NOT NULL
        );

        -- Unquoted on purpose: the providers select "QueryKey, QueryText FROM OrleansQuery" unquoted.
        CREATE TABLE OrleansQuery (
            QueryKey  text NOT NULL PRIMARY KEY,
            QueryText text NOT NULL
        );

        -- Clustering: one version row per cluster (ClusterId arrives as DeploymentId) and its members.
        -- Every change to a member compares and bumps the version in the same statement.
        CREATE TABLE orleans_membership_version (
            deployment_id text        NOT NULL PRIMARY KEY,
            version       integer     NOT NULL DEFAULT 0,
            changed_at    timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE orleans_membership (
            deployment_id  text        NOT NULL,
            address        text        NOT NULL,
            port           integer     NOT NULL,
            generation     integer     NOT NULL,
            silo_name      text        NOT NULL,
            host_name      text        NOT NULL,
            status         integer     NOT NULL,
            proxy_port     integer     NULL,
            suspect_times  text        NULL,
            start_time     timestamptz NOT NULL,
            iam_alive_time timestamptz NOT NULL,
            PRIMARY KEY (deployment_id, address, port, generation)
        );

        -- Grain state. The nullable key extension is stored as '' so the primary key can hold it.
        CREATE TABLE orleans_storage (
            service_id         text        NOT NULL,
            grain_type         text        NOT NULL,
            grain_id_n0        bigint      NOT NULL,
            grain_id_n1        bigint      NOT NULL,
            grain_id_extension text        NOT NULL,
            payload_binary     bytea       NULL,
            version            integer     NOT NULL,
            modified_on        timestamptz NOT NULL,
            PRIMARY KEY (service_id, grain_type, grain_id_n0, grain_id_n1, grain_id_extension)
        );

        -- Reminders. grain_hash is the ring hash cast to a signed 32-bit integer and compared signed;
        -- period is in milliseconds and may exceed 32 bits.
        CREATE TABLE orleans_reminders (
            service_id    text        NOT NULL,
            grain_id      text        NOT NULL,
            reminder_name text        NOT NULL,
            start_time    timestamptz NOT NULL,
            period        bigint      NOT NULL,
            grain_hash    integer     NOT NULL,
            version       integer     NOT NULL,
            PRIMARY KEY (service_id, grain_id, reminder_name)
        );
        CREATE INDEX orleans_reminders_ring ON orleans_reminders (service_id, grain_hash);

        INSERT INTO OrleansQuery (QueryKey, QueryText) VALUES
        ('InsertMembershipVersionKey', $q$
            WITH created AS (
                INSERT INTO orleans_membership_version (deployment_id) VALUES (@DeploymentId)
                ON CONFLICT DO NOTHING RETURNING 1)
            SELECT EXISTS (SELECT 1 FROM created);
        $q$),
        -- The version row outer-joined to the members: always at least one row.
        ('MembershipReadAllKey', $q$
            SELECT m.address AS Address, m.port AS Port, m.generation AS Generation, m.silo_name AS SiloName,
                   m.host_name AS HostName, m.status AS Status, m.proxy_port AS ProxyPort,
                   m.suspect_times AS SuspectTimes, m.start_time AS StartTime, m.iam_alive_time AS IAmAliveTime,
                   v.version AS Version
            FROM orleans_membership_version v
            LEFT JOIN orleans_membership m ON m.deployment_id = v.deployment_id
            WHERE v.deployment_id = @DeploymentId;
        $q$),
        ('MembershipReadRowKey', $q$
            SELECT m.address AS Address, m.port AS Port, m.generation AS Generation, m.silo_name AS SiloName,
                   m.host_name AS HostName, m.status AS Status, m.proxy_port AS ProxyPort,
                   m.suspect_times AS SuspectTimes, m.start_time AS StartTime, m.iam_alive_time AS IAmAliveTime,
                   v.version AS Version
            FROM orleans_membership_version v
            LEFT JOIN orleans_membership m ON m.deployment_id = v.deployment_id
                AND m.address = @Address AND m.port = @Port AND m.generation = @Generation
            WHERE v.deployment_id = @DeploymentId;
        $q$),
        ('GatewaysQueryKey', $q$
            SELECT address AS Address, proxy_port AS ProxyPort, generation AS Generation
            FROM orleans_membership
            WHERE deployment_id = @DeploymentId AND status = @Status AND proxy_port > 0;
        $q$),
        ('UpdateIAmAlivetimeKey', $q$
            UPDATE orleans_membership SET iam_alive_time = @IAmAliveTime
            WHERE deployment_id = @DeploymentId AND address = @Address AND port = @Port AND generation = @Generation;
        $q$),
        -- Bumps the version only when it still equals @Version and the member is absent; inserts only
        -- when it bumped. One statement, so one atomic step.
        ('InsertMembershipKey', $q$
            WITH bumped AS (
                UPDATE orleans_membership_version SET version = version + 1, changed_at = now()
                WHERE deployment_id = @DeploymentId AND version = @Version
                  AND NOT EXISTS (SELECT 1 FROM orleans_membership
                                  WHERE deployment_id = @DeploymentId AND address = @Address
                                    AND port = @Port AND generation = @Generation)
                RETURNING deployment_id),
            inserted AS (
                INSERT INTO orleans_membership (deployment_id, address, port, generation, silo_name, host_name,
                                                status, proxy_port, suspect_times, start_time, iam_alive_time)
                SELECT deployment_id, @Address, @Port, @Generation, @SiloName, @HostName,
                       @Status, @ProxyPort, NULL, @StartTime, @IAmAliveTime
                FROM bumped
                RETURNING 1)
            SELECT EXISTS (SELECT 1 FROM inserted);
        $q$),
        ('UpdateMembershipKey', $q$
            WITH bumped AS (
                UPDATE orleans_membership_version SET version = version + 1, changed_at = now()
                WHERE deployment_id = @DeploymentId AND version = @Version
                  AND EXISTS (SELECT 1 FROM orleans_membership
                              WHERE deployment_id = @DeploymentId AND address = @Address
                                AND port = @Port AND generation = @Generation)
                RETURNING deployment_id),
            updated AS (
                UPDATE orleans_membership m
                SET status = @Status, suspect_times = @SuspectTimes, iam_alive_time = @IAmAliveTime
                FROM bumped
                WHERE m.deployment_id = bumped.deployment_id AND m.address = @Address
                  AND m.port = @Port AND m.generation = @Generation
                RETURNING 1)
            SELECT EXISTS (SELECT 1 FROM updated);
        $q$),
        ('DeleteMembershipTableEntriesKey', $q$
            DELETE FROM orleans_membership WHERE deployment_id = @DeploymentId;
            DELETE FROM orleans_membership_version WHERE deployment_id = @DeploymentId;
        $q$),
        ('CleanupDefunctSiloEntriesKey', $q$
            DELETE FROM orleans_membership
            WHERE deployment_id = @DeploymentId AND status = 6 AND iam_alive_time < @IAmAliveTime;
        $q$),
        ('ReadFromStorageKey', $q$
            SELECT payload_binary AS PayloadBinary, version AS Version FROM orleans_storage
            WHERE service_id = @ServiceId AND grain_type = @GrainTypeString
              AND grain_id_n0 = @GrainIdN0 AND grain_id_n1 = @GrainIdN1
              AND grain_id_extension = COALESCE(@GrainIdExtensionString, '');
        $q$),
        -- At most one of the two statements returns a row: a first write inserts only when no row
        -- exists (even a cleared one); a later write updates only where the stored version still
        -- equals the grain's ETag. Both run in one implicit transaction.
        ('WriteToStorageKey', $q$
            INSERT INTO orleans_storage (service_id, grain_type, grain_id_n0, grain_id_n1, grain_id_extension,
                                         payload_binary, version, modified_on)
            SELECT @ServiceId, @GrainTypeString, @GrainIdN0, @GrainIdN1, COALESCE(@GrainIdExtensionString, ''),
                   @PayloadBinary, 1, now()
            WHERE @GrainStateVersion IS NULL
            ON CONFLICT DO NOTHING
            RETURNING version AS NewGrainStateVersion;
            UPDATE orleans_storage SET payload_binary = @PayloadBinary, version = version + 1, modified_on = now()
            WHERE @GrainStateVersion IS NOT NULL AND service_id = @ServiceId AND grain_type = @GrainTypeString
              AND grain_id_n0 = @GrainIdN0 AND grain_id_n1 = @GrainIdN1
              AND grain_id_extension = COALESCE(@GrainIdExtensionString, '') AND version = @GrainStateVersion
            RETURNING version AS NewGrainStateVersion;
        $q$),
        ('ClearStorageKey', $q$
            UPDATE orleans_storage SET payload_binary = NULL, version = version + 1, modified_on = now()
            WHERE service_id = @ServiceId AND grain_type = @GrainTypeString
              AND grain_id_n0 = @GrainIdN0 AND grain_id_n1 = @GrainIdN1
              AND grain_id_extension = COALESCE(@GrainIdExtensionString, '') AND version = @GrainStateVersion
            RETURNING version;
        $q$),
        ('DeleteStorageKey', $q$
            DELETE FROM orleans_storage
            WHERE service_id = @ServiceId AND grain_type = @GrainTypeString
              AND grain_id_n0 = @GrainIdN0 AND grain_id_n1 = @GrainIdN1
              AND grain_id_extension = COALESCE(@GrainIdExtensionString, '') AND version = @GrainStateVersion
            RETURNING version + 1;
        $q$),
        ('ReadReminderRowsKey', $q$
            SELECT grain_id AS GrainId, reminder_name AS ReminderName, start_time AS StartTime, period AS Period, version AS Version
            FROM orleans_reminders WHERE service_id = @ServiceId AND grain_id = @GrainId;
        $q$),
        ('ReadReminderRowKey', $q$
            SELECT grain_id AS GrainId, reminder_name AS ReminderName, start_time AS StartTime, period AS Period, version AS Version
            FROM orleans_reminders WHERE service_id = @ServiceId AND grain_id = @GrainId AND reminder_name = @ReminderName;
        $q$),
        ('ReadRangeRows1Key', $q$
            SELECT grain_id AS GrainId, reminder_name AS ReminderName, start_time AS StartTime, period AS Period, version AS Version
            FROM orleans_reminders WHERE service_id = @ServiceId AND grain_hash > @BeginHash AND grain_hash <= @EndHash;
        $q$),
        ('ReadRangeRows2Key', $q$
            SELECT grain_id AS GrainId, reminder_name AS ReminderName, start_time AS StartTime, period AS Period, version AS Version
            FROM orleans_reminders WHERE service_id = @ServiceId AND (grain_hash > @BeginHash OR grain_hash <= @EndHash);
        $q$),
        -- Unconditional upsert: reminders are checked against their version on delete only.
        ('UpsertReminderRowKey', $q$
            INSERT INTO orleans_reminders (service_id, grain_id, reminder_name, start_time, period, grain_hash, version)
            VALUES (@ServiceId, @GrainId, @ReminderName, @StartTime, @Period, @GrainHash, 0)
            ON CONFLICT (service_id, grain_id, reminder_name) DO UPDATE
            SET start_time = excluded.start_time, period = excluded.period, grain_hash = excluded.grain_hash,
                version = orleans_reminders.version + 1
            RETURNING version AS Version;
        $q$),
        -- Exactly one boolean row, also when nothing matched.
        ('DeleteReminderRowKey', $q$
            WITH deleted AS (
                DELETE FROM orleans_reminders
                WHERE service_id = @ServiceId AND grain_id = @GrainId AND reminder_name = @ReminderName AND version = @Version
                RETURNING 1)
            SELECT EXISTS (SELECT 1 FROM deleted);
        $q$),
        ('DeleteReminderRowsKey', $q$
            DELETE FROM orleans_reminders WHERE service_id = @ServiceId;
        $q$);
        """,
        ItemSql.AddBatchSpec,
        ItemSql.AddWebhooks,
        ItemSql.AddAttempts,
        ItemSql.AddOwners,
        """
        -- The pool an item runs on, as its batch's escalation list numbers them (0: the batch's own): each pool's
        -- slots claim the pending items of their stage, found by the pending index.
        ALTER TABLE ns_items ADD COLUMN stage integer NOT NULL DEFAULT 0;
        DROP INDEX ns_items_pending;
        CREATE INDEX ns_items_pending ON ns_items (batch_id, stage, next_attempt_at, idx) WHERE state = 0;
        """,
        ItemSql.AddItemWebhooks,
    ];

    /// <summary>The newest schema version this build knows.</summary>
    public static int LatestVersion => Migrations.Length;
}
