using System.ComponentModel.DataAnnotations;

namespace Nightshift.Storage;

/// <summary>
/// Where items, grain state and reminders are kept (configuration section <c>Nightshift:Store</c>): a
/// PostgreSQL database shared by a cluster when <see cref="ConnectionString"/> is set, else one SQLite file.
/// </summary>
public sealed class ItemStoreOptions
{
    /// <summary>The configuration section.</summary>
    public const string Section = "Nightshift:Store";

    /// <summary>An Npgsql connection string, e.g. <c>Host=db;Database=nightshift;Username=nightshift;Password=…</c>. Default: none (the SQLite file is used).</summary>
    public string ConnectionString { get; set; } = "";

    /// <summary>SQLite: path of the database file; its folder is created. Default: <c>./data/nightshift.db</c>.</summary>
    public string Path { get; set; } = System.IO.Path.Combine("data", "nightshift.db");

    /// <summary>
    /// SQLite: the file belongs to this one process, so at start every item still leased was leased by a
    /// process that died, and goes back to pending at once. Default: true.
    /// </summary>
    public bool RecoverLeasesAtStart { get; set; } = true;

    /// <summary>
    /// SQLite: whether every commit of item state waits for the disk (<c>synchronous = FULL</c>). Off
    /// (<c>NORMAL</c>, in WAL mode): a commit survives the death of any process, kill -9 included, but
    /// an operating-system crash or power cut may lose the last commits, whose items then run again.
    /// On: survives those too, at about half the throughput on this kind of disk. Default: false.
    /// </summary>
    public bool SyncEveryCommit { get; set; }

    /// <summary>
    /// How often an item's attempt may be cut off by the death of the process running it before the
    /// item fails instead of being tried again. Default: 5.
    /// </summary>
    [Range(1, 1000)]
    public int MaxInterruptions { get; set; } = 5;

    /// <summary>
    /// PostgreSQL: how long a store operation keeps retrying (with backoff) through a lost connection or a
    /// restarting server before it fails. Default: 60 s.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")]
    public TimeSpan OutageTolerance { get; set; } = TimeSpan.FromSeconds(60);

    /// <summary>Whether the store is the PostgreSQL database rather than the SQLite file.</summary>
    public bool UsesPostgres => !string.IsNullOrWhiteSpace(ConnectionString);

    /// <summary>The ADO.NET invariant Orleans' providers load (see shared/ORLEANS-ADONET.md: <c>System.Data.SQLite</c> means Microsoft.Data.Sqlite).</summary>
    public string OrleansInvariant => UsesPostgres ? "Npgsql" : "System.Data.SQLite";

    /// <summary>The connection string Orleans' providers use, on the same database as the items.</summary>
    public string OrleansConnectionString => UsesPostgres ? Postgres.PostgresDialect.ConnectionStringFor(ConnectionString) : Sqlite.SqliteDialect.ConnectionStringFor(Path);
}
