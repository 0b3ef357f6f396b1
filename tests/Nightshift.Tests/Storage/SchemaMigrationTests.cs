using System.Data.Common;
using System.Text;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Npgsql;
using Nightshift.Storage;
using Nightshift.Storage.Postgres;
using Nightshift.Storage.Sqlite;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Storage;

/// <summary>
/// A database left at any older schema version by an earlier build migrates to exactly the schema a fresh
/// database gets: the same tables, columns, indexes and Orleans queries, and every version recorded once.
/// </summary>
public sealed class SchemaMigrationTests : IDisposable
{
    private const string SqliteSchemaText = """
        SELECT type || ' ' || name || ' ' || COALESCE(sql, '') FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name;
        SELECT QueryKey || ' ' || QueryText FROM OrleansQuery ORDER BY QueryKey;
        SELECT version FROM ns_schema_version ORDER BY version;
        """;

    private const string PostgresSchemaText = """
        SELECT table_name || ' ' || column_name || ' ' || data_type || ' ' || is_nullable || ' ' || COALESCE(column_default, '')
        FROM information_schema.columns WHERE table_schema = 'public' ORDER BY table_name, ordinal_position;
        SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname;
        SELECT QueryKey || ' ' || QueryText FROM OrleansQuery ORDER BY QueryKey;
        SELECT version::text FROM ns_schema_version ORDER BY version;
        """;

    private readonly TempDirectory _directory = new();

    [Fact]
    public async Task Sqlite_FromEveryOlderVersion_MigratesToTheSchemaOfAFreshDatabase()
    {
        var schemas = new List<string>();
        for (var version = 0; version <= SqliteSchema.Migrations.Length; version++)
        {
            var options = new ItemStoreOptions { Path = Path.Combine(_directory.Path, $"at-{version}.db") };
            if (version > 0)
            {
                await using var connection = new SqliteConnection($"Data Source={options.Path};Pooling=False");
                await connection.OpenAsync(Ct);
                await MigrateAsAnEarlierBuildAsync(connection, SqliteSchema.Migrations[..version], "TEXT", "datetime('now')");
            }

            schemas.Add(await MigrateAndDescribeAsync(options, () => new SqliteConnection($"Data Source={options.Path};Pooling=False"),
                SqliteSchemaText));
        }

        Assert.Contains("fingerprint", schemas[0]);
        Assert.Contains("ReadFromStorageKey", schemas[0]);
        Assert.All(schemas, schema => Assert.Equal(schemas[0], schema));
    }

    [Fact]
    public async Task Postgres_FromEveryOlderVersion_MigratesToTheSchemaOfAFreshDatabase()
    {
        var server = await PostgresServer.SharedAsync();
        var schemas = new List<string>();
        for (var version = 0; version <= PostgresSchema.Migrations.Length; version++)
        {
            var options = new ItemStoreOptions { ConnectionString = await server.CreateDatabaseAsync() };
            if (version > 0)
            {
                await using var connection = new NpgsqlConnection(options.ConnectionString);
                await connection.OpenAsync(Ct);
                await MigrateAsAnEarlierBuildAsync(connection, PostgresSchema.Migrations[..version], "timestamptz", "now()");
            }

            schemas.Add(await MigrateAndDescribeAsync(options, () => new NpgsqlConnection(options.ConnectionString), PostgresSchemaText));
        }

        Assert.Contains("fingerprint", schemas[0]);
        Assert.Contains("ReadFromStorageKey", schemas[0]);
        Assert.All(schemas, schema => Assert.Equal(schemas[0], schema));
    }

    public void Dispose() => _directory.Dispose();

    /// <summary>What a build that knew only <paramref name="migrations"/> left behind (written here, not by the store).</summary>
    private static async Task MigrateAsAnEarlierBuildAsync(DbConnection connection, string[] migrations, string timeType, string now)
    {
        await using var command = connection.CreateCommand();
        command.CommandText = $"CREATE TABLE ns_schema_version (version integer NOT NULL PRIMARY KEY, applied_at {timeType} NOT NULL);";
        await command.ExecuteNonQueryAsync(Ct);
        for (var i = 0; i < migrations.Length; i++)
        {
            command.CommandText = $"{migrations[i]}\nINSERT INTO ns_schema_version (version, applied_at) VALUES ({i + 1}, {now});";
            await command.ExecuteNonQueryAsync(Ct);
        }
    }

    private static async Task<string> MigrateAndDescribeAsync(ItemStoreOptions options, Func<DbConnection> open, string describe)
    {
        var logger = NullLogger<RelationalItemStore>.Instance;
        await using (var store = new RelationalItemStore(Options.Create(options), TimeProvider.System, logger))
        {
            await store.InitializeAsync(Ct);
        }

        await using var connection = open();
        await connection.OpenAsync(Ct);
        await using var command = connection.CreateCommand();
        command.CommandText = describe;
        await using var reader = await command.ExecuteReaderAsync(Ct);
        var schema = new StringBuilder();
        do
        {
            while (await reader.ReadAsync(Ct))
            {
                schema.AppendLine(reader.GetString(0));
            }
        }
        while (await reader.NextResultAsync(Ct));

        return schema.ToString();
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
