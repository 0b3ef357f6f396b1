using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Nightshift.Storage;
using Nightshift.Storage.Sqlite;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Storage;

/// <summary>The item store contract on a real SQLite file in a temporary folder.</summary>
public sealed class SqliteItemStoreTests : ItemStoreContractTests
{
    private readonly TempDirectory _directory = new();

    private string DatabasePath => Path.Combine(_directory.Path, "items.db");

    protected override int LatestSchemaVersion => SqliteSchema.LatestVersion;

    protected override int OrleansQueries => 11;

    protected override Task CreateDatabaseAsync() => Task.CompletedTask;

    protected override IItemStore NewStore(int maxInterruptions = 5) =>
        new RelationalItemStore(Options.Create(new ItemStoreOptions { Path = DatabasePath, MaxInterruptions = maxInterruptions }), Time, NullLogger<RelationalItemStore>.Instance);

    protected override async Task<(long Versions, long Newest, long Queries)> ReadSchemaAsync()
    {
        await using var connection = new SqliteConnection($"Data Source={DatabasePath}");
        await connection.OpenAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT COUNT(*), MAX(version), (SELECT COUNT(*) FROM OrleansQuery) FROM ns_schema_version;";
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return (reader.GetInt64(0), reader.GetInt64(1), reader.GetInt64(2));
    }

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        SqliteConnection.ClearAllPools();
        _directory.Dispose();
    }
}
