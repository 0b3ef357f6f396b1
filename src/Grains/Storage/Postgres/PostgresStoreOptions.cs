using System.ComponentModel.DataAnnotations;

namespace Nightshift.Storage.Postgres;

/// <summary>
/// The shared store of a cluster: one PostgreSQL database for items, grain state, reminders and
/// membership (configuration section <c>Nightshift:Store</c>, chosen when <see cref="ConnectionString"/> is set).
/// </summary>
public sealed class PostgresStoreOptions
{
    /// <summary>An Npgsql connection string, e.g. <c>Host=db;Database=nightshift;Username=nightshift;Password=…</c>. Default: none (the SQLite store is used).</summary>
    [Required]
    public string ConnectionString { get; set; } = "";

    /// <summary>
    /// How often an item's attempt may be cut off by the death of the process running it before the
    /// item fails instead of being tried again. Default: 5.
    /// </summary>
    [Range(1, 1000)]
    public int MaxInterruptions { get; set; } = 5;

    /// <summary>
    /// How long a store operation keeps retrying (with backoff) through a lost connection or a
    /// restarting server before it fails. Default: 60 s.
    /// </summary>
    [Range(typeof(TimeSpan), "00:00:01", "01:00:00")]
    public TimeSpan OutageTolerance { get; set; } = TimeSpan.FromSeconds(60);
}
