using Microsoft.Data.Sqlite;
using Nightshift.Storage;

namespace Nightshift.Tests.Fixtures;

/// <summary>
/// A folder for runs of the real <c>run</c> command: its input, results, SQLite store and the simulated
/// model's call log, and ways to read the store from outside while a run goes on or after it died.
/// </summary>
public sealed class RunWorkspace : IDisposable
{
    private readonly TempDirectory _directory = new();

    public string Input => Path.Combine(_directory.Path, "input.jsonl");

    public string Output => Path.Combine(_directory.Path, "results.jsonl");

    public string StorePath => Path.Combine(_directory.Path, "store", "nightshift.db");

    public string CallLog => Path.Combine(_directory.Path, "calls.log");

    public static Dictionary<string, string> Latency(int minMs, int maxMs) => new()
    {
        ["Nightshift__Simulated__LatencyMin"] = TimeSpan.FromMilliseconds(minMs).ToString(),
        ["Nightshift__Simulated__LatencyMax"] = TimeSpan.FromMilliseconds(maxMs).ToString(),
    };

    /// <summary>Starts <c>run input.jsonl --out … --store …</c> with <paramref name="options"/>; the simulated model logs its calls.</summary>
    public SiloProcess Start(IReadOnlyDictionary<string, string> environment, params string[] options)
    {
        var withLog = new Dictionary<string, string>(environment) { ["Nightshift__Simulated__CallLog"] = CallLog };
        return SiloProcess.Start(_directory.Path, withLog, ["run", "input.jsonl", "--out", Output, "--store", StorePath, .. options]);
    }

    /// <summary>Waits until the store holds <paramref name="succeeded"/> succeeded items; fails after a minute.</summary>
    public Task WaitUntilSucceededAsync(SiloProcess silo, long succeeded) =>
        Eventually.MatchesAsync(CountsAsync, counts => counts.GetValueOrDefault(ItemState.Succeeded) >= succeeded,
            counts => $"fewer than {succeeded} items succeeded ({counts.GetValueOrDefault(ItemState.Succeeded)}). Output:\n{silo.Output}");

    public async Task<Dictionary<ItemState, long>> CountsAsync()
    {
        var counts = new Dictionary<ItemState, long>();
        if (!File.Exists(StorePath))
        {
            return counts;
        }

        await using var connection = await OpenStoreAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT state, COUNT(*) FROM ns_items GROUP BY state";
        try
        {
            await using var reader = await command.ExecuteReaderAsync(TestContext.Current.CancellationToken);
            while (await reader.ReadAsync(TestContext.Current.CancellationToken))
            {
                counts[(ItemState)reader.GetInt32(0)] = reader.GetInt64(1);
            }
        }
        catch (SqliteException missing) when (missing.Message.Contains("no such table", StringComparison.Ordinal))
        {
            // The silo has created the file but not yet its schema.
        }

        return counts;
    }

    public async Task<HashSet<string>> SucceededCustomIdsAsync()
    {
        var ids = new HashSet<string>();
        if (!File.Exists(StorePath))
        {
            return ids;
        }

        await using var connection = await OpenStoreAsync();
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT custom_id FROM ns_items WHERE state = 2";
        await using var reader = await command.ExecuteReaderAsync(TestContext.Current.CancellationToken);
        while (await reader.ReadAsync(TestContext.Current.CancellationToken))
        {
            ids.Add(reader.GetString(0));
        }

        return ids;
    }

    public void Dispose() => _directory.Dispose();

    private async Task<SqliteConnection> OpenStoreAsync()
    {
        var connection = new SqliteConnection($"Data Source={StorePath};Mode=ReadOnly;Pooling=False");
        await connection.OpenAsync(TestContext.Current.CancellationToken);
        return connection;
    }
}
