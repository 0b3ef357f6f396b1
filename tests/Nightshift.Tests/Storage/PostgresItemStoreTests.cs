using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Npgsql;
using Nightshift.Storage;
using Nightshift.Storage.Postgres;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Storage;

/// <summary>The item store contract on a real PostgreSQL server, a fresh database per test.</summary>
public sealed class PostgresItemStoreTests : ItemStoreContractTests
{
    private string _connectionString = "";

    protected override int LatestSchemaVersion => PostgresSchema.LatestVersion;

    /// <summary>Grain storage's 4, reminders' 7 and clustering's 9.</summary>
    protected override int OrleansQueries => 20;

    protected override async Task CreateDatabaseAsync() =>
        _connectionString = await (await PostgresServer.SharedAsync()).CreateDatabaseAsync();

    protected override IItemStore NewStore(int maxInterruptions = 5) =>
        new RelationalItemStore(Options.Create(new ItemStoreOptions { ConnectionString = _connectionString, MaxInterruptions = maxInterruptions }), Time, NullLogger<RelationalItemStore>.Instance);

    protected override async Task<(long Versions, long Newest, long Queries)> ReadSchemaAsync()
    {
        await using var connection = new NpgsqlConnection(_connectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand("SELECT count(*), max(version), (SELECT count(*) FROM OrleansQuery) FROM ns_schema_version;", connection);
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return (reader.GetInt64(0), reader.GetInt32(1), reader.GetInt64(2));
    }
}
