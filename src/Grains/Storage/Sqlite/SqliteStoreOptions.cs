using System.ComponentModel.DataAnnotations;

namespace Nightshift.Storage.Sqlite;

/// <summary>The embedded store: one SQLite file for items, grain state and reminders.</summary>
public sealed class SqliteStoreOptions
{
    /// <summary>Path of the database file; its folder is created. Default: <c>./data/nightshift.db</c>.</summary>
    public string Path { get; set; } = System.IO.Path.Combine("data", "nightshift.db");

    /// <summary>
    /// The file belongs to this one process, so at start every item still leased was leased by a
    /// process that died, and goes back to pending at once. Default: true.
    /// </summary>
    public bool RecoverLeasesAtStart { get; set; } = true;

    /// <summary>
    /// Whether every commit of item state waits for the disk (SQLite <c>synchronous = FULL</c>). Off
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

    public string ConnectionString => $"Data Source={System.IO.Path.GetFullPath(Path)};Pooling=True;Default Timeout=30";
}
