using System.Diagnostics;
using System.Globalization;
using Npgsql;

namespace Nightshift.Tests.Fixtures;

/// <summary>
/// A real PostgreSQL server for tests. By default a private one, started from the local binaries
/// (<c>/usr/lib/postgresql/*/bin</c>): initdb into a temporary folder, <c>pg_ctl start</c> on a free
/// 127.0.0.1 port, stopped and removed on dispose. When <c>NIGHTSHIFT_TEST_POSTGRES</c> holds a
/// connection string, that server is used instead (its user must be allowed to create databases).
/// Every test gets a database of its own from <see cref="CreateDatabaseAsync"/>.
/// </summary>
public sealed class PostgresServer : IAsyncDisposable
{
    public const string ConnectionStringVariable = "NIGHTSHIFT_TEST_POSTGRES";

    private const string HowToGetOne =
        "These tests need PostgreSQL. Install Debian's 'postgresql' package (./test.sh does, when run as root: apt-get install postgresql), " +
        $"or set {ConnectionStringVariable} to a connection string of a server whose user may create databases.";

    private static readonly SemaphoreSlim SharedLock = new(1, 1);
    private static PostgresServer? _shared;

    private readonly string? _dataDirectory;
    private readonly string? _binaries;
    private readonly bool _asPostgresUser;
    private readonly string _adminConnectionString;

    private PostgresServer(string adminConnectionString, string? dataDirectory, string? binaries, bool asPostgresUser)
    {
        _adminConnectionString = adminConnectionString;
        _dataDirectory = dataDirectory;
        _binaries = binaries;
        _asPostgresUser = asPostgresUser;
    }

    /// <summary>One server for the whole test run, started on first use and stopped when the test process exits.</summary>
    public static async Task<PostgresServer> SharedAsync()
    {
        await SharedLock.WaitAsync();
        try
        {
            if (_shared is null)
            {
                var connectionString = Environment.GetEnvironmentVariable(ConnectionStringVariable);
                _shared = string.IsNullOrWhiteSpace(connectionString) ? await StartPrivateAsync() : new PostgresServer(connectionString, null, null, false);
                AppDomain.CurrentDomain.ProcessExit += (_, _) => _shared.DisposeAsync().AsTask().GetAwaiter().GetResult();
            }

            return _shared;
        }
        finally
        {
            SharedLock.Release();
        }
    }

    /// <summary>A server of the test's own, from the local binaries (a test that restarts the server needs one).</summary>
    public static async Task<PostgresServer> StartPrivateAsync()
    {
        var binaries = FindBinaries() ?? throw new InvalidOperationException($"No PostgreSQL binaries under /usr/lib/postgresql/*/bin. {HowToGetOne}");
        var asPostgresUser = Environment.UserName == "root";
        var dataDirectory = Path.Combine(Path.GetTempPath(), "nightshift-pg", Guid.NewGuid().ToString("n"));
        Directory.CreateDirectory(dataDirectory);
        if (asPostgresUser)
        {
            // initdb refuses to run as root: the server runs as the package's postgres user.
            await RunAsync("chown", ["-R", "postgres:postgres", Path.GetDirectoryName(dataDirectory)!]);
        }

        var port = ApiHost.FreePort();
        var server = new PostgresServer(
            $"Host=127.0.0.1;Port={port};Username=postgres;Database=postgres;Pooling=false;Timeout=15",
            dataDirectory, binaries, asPostgresUser);
        await server.PgAsync("initdb", ["-D", dataDirectory, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--no-sync"]);
        await File.AppendAllTextAsync(Path.Combine(dataDirectory, "postgresql.conf"), string.Join('\n',
            $"port = {port}",
            "listen_addresses = '127.0.0.1'",
            $"unix_socket_directories = '{dataDirectory}'",
            "max_connections = 300",
            "fsync = off",
            "full_page_writes = off",
            "synchronous_commit = on",
            ""));
        await server.PgCtlAsync("start");
        return server;
    }

    /// <summary>A new, empty database; returns its connection string.</summary>
    public async Task<string> CreateDatabaseAsync()
    {
        var name = "ns_" + Guid.NewGuid().ToString("n")[..16];
        await using (var connection = new NpgsqlConnection(_adminConnectionString))
        {
            await connection.OpenAsync();
            await using var create = new NpgsqlCommand($"CREATE DATABASE {name};", connection);
            await create.ExecuteNonQueryAsync();
        }

        return new NpgsqlConnectionStringBuilder(_adminConnectionString) { Database = name, Pooling = true }.ConnectionString;
    }

    /// <summary><c>pg_ctl restart</c>: every connection is cut, and the server is back a moment later.</summary>
    public Task RestartAsync() => PgCtlAsync("restart", "-m", "fast");

    public async ValueTask DisposeAsync()
    {
        if (_dataDirectory is null)
        {
            return;
        }

        NpgsqlConnection.ClearAllPools();
        if (File.Exists(Path.Combine(_dataDirectory, "postmaster.pid")))
        {
            await PgCtlAsync("stop", "-m", "immediate");
        }

        Directory.Delete(_dataDirectory, recursive: true);
    }

    private Task PgCtlAsync(string action, params string[] options) =>
        PgAsync("pg_ctl", ["-D", _dataDirectory!, "-l", Path.Combine(_dataDirectory!, "server.log"), "-w", "-t", "60", action, .. options]);

    private Task PgAsync(string tool, string[] arguments) =>
        _asPostgresUser
            ? RunAsync("runuser", ["-u", "postgres", "--", Path.Combine(_binaries!, tool), .. arguments])
            : RunAsync(Path.Combine(_binaries!, tool), arguments);

    private static string? FindBinaries() =>
        Directory.Exists("/usr/lib/postgresql")
            ? Directory.GetDirectories("/usr/lib/postgresql")
                .Select(version => Path.Combine(version, "bin"))
                .Where(bin => File.Exists(Path.Combine(bin, "initdb")) && File.Exists(Path.Combine(bin, "pg_ctl")))
                .OrderByDescending(bin => int.TryParse(Path.GetFileName(Path.GetDirectoryName(bin)), NumberStyles.None, CultureInfo.InvariantCulture, out var major) ? major : 0)
                .FirstOrDefault()
            : null;

    private static async Task RunAsync(string file, string[] arguments)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        // pg_ctl's server inherits the pipes; read them asynchronously so it never blocks on a full one.
        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{file} did not start");
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{file} {string.Join(' ', arguments)} exited with {process.ExitCode}: {await error}{await output}. {HowToGetOne}");
        }
    }
}
