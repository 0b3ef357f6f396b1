using Microsoft.Extensions.DependencyInjection;
using Nightshift.Pools;
using Nightshift.Tests.Fixtures;
using Orleans.Storage;

namespace Nightshift.Tests.Storage;

/// <summary>
/// Our SQL behind Orleans' ADO.NET grain storage and reminders (shared/ORLEANS-ADONET.md, sections 3
/// and 5), driven through the providers themselves on a real silo: the same tests on SQLite and PostgreSQL.
/// </summary>
public abstract class GrainStorageContractTests : IAsyncLifetime
{
    private const string StateName = "contract";
    private NightshiftCluster _cluster = null!;

    /// <summary>Settings that put the cluster on this test's store.</summary>
    protected abstract Task<Dictionary<string, string>> StoreSettingsAsync();

    public async ValueTask InitializeAsync() => _cluster = await NightshiftCluster.StartAsync(await StoreSettingsAsync(), serviceId: $"contract-{Guid.NewGuid():n}");

    public virtual async ValueTask DisposeAsync()
    {
        await _cluster.DisposeAsync();
        GC.SuppressFinalize(this);
    }

    [Fact]
    public async Task State_IsWrittenReadAndCleared_UnderOptimisticConcurrency()
    {
        var storage = _cluster.SiloServices.GetRequiredKeyedService<IGrainStorage>("nightshift");
        var id = GrainId.Create("contract", "k-1");
        var first = new GrainState<Counter>(new Counter { Value = 1 });
        await storage.WriteStateAsync(StateName, id, first);

        var read = new GrainState<Counter>();
        await storage.ReadStateAsync(StateName, id, read);
        Assert.Equal((1, true, first.ETag), (read.State!.Value, read.RecordExists, read.ETag));

        read.State!.Value = 2;
        await storage.WriteStateAsync(StateName, id, read);
        first.State!.Value = 3;
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync(StateName, id, first));

        var rival = new GrainState<Counter>(new Counter { Value = 9 });
        await Assert.ThrowsAsync<InconsistentStateException>(() => storage.WriteStateAsync(StateName, id, rival));

        await storage.ClearStateAsync(StateName, id, read);
        var cleared = new GrainState<Counter>();
        await storage.ReadStateAsync(StateName, id, cleared);
        Assert.Equal((0, false), (cleared.State?.Value ?? 0, cleared.RecordExists));
    }

    [Fact]
    public async Task Reminders_AreUpsertedReadByGrainAndRing_AndDeletedOnlyUnderTheirETag()
    {
        var table = _cluster.SiloServices.GetRequiredService<IReminderTable>();
        var grain = GrainId.Create("contract", "r-1");
        var start = new DateTime(2026, 11, 23, 3, 0, 0, DateTimeKind.Utc);
        var firstETag = await table.UpsertRow(new ReminderEntry { GrainId = grain, ReminderName = "tick", StartAt = start, Period = TimeSpan.FromMinutes(1) }, Ct);
        var secondETag = await table.UpsertRow(new ReminderEntry { GrainId = grain, ReminderName = "tick", StartAt = start, Period = TimeSpan.FromDays(30) }, Ct);
        await table.UpsertRow(new ReminderEntry { GrainId = grain, ReminderName = "tock", StartAt = start, Period = TimeSpan.FromMinutes(5) }, Ct);

        var row = await table.ReadRow(grain, "tick", Ct);
        Assert.Equal((TimeSpan.FromDays(30), secondETag, start), (row!.Period, row.ETag, row.StartAt));
        Assert.NotEqual(firstETag, secondETag);
        Assert.Equal(["tick", "tock"], (await table.ReadRows(grain, Ct)).Reminders.Select(r => r.ReminderName).Order());
        Assert.Equal(2, (await table.ReadRows(0, 0, Ct)).Reminders.Count(r => r.GrainId == grain));

        Assert.False(await table.RemoveRow(grain, "tick", firstETag!, Ct));
        Assert.True(await table.RemoveRow(grain, "tick", secondETag!, Ct));
        Assert.Null(await table.ReadRow(grain, "tick", Ct));
    }

    [Fact]
    public async Task PoolConfiguration_OutlivesTheCluster()
    {
        var settings = await StoreSettingsAsync();
        var serviceId = $"outlive-{Guid.NewGuid():n}";
        await using (var first = await NightshiftCluster.StartAsync(settings, serviceId: serviceId))
        {
            await first.Grains.GetGrain<IPoolGrain>("kept").Configure(new PoolConfig { MaxRunning = 7, Rpm = 600 });
        }

        await using var second = await NightshiftCluster.StartAsync(settings, serviceId: serviceId);
        var config = await second.Grains.GetGrain<IPoolGrain>("kept").GetConfig();

        Assert.Equal((7, 600), (config!.MaxRunning, config.Rpm));
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    [GenerateSerializer, Alias("nightshift.tests.Counter")]
    public sealed class Counter
    {
        [Id(0)] public int Value { get; set; }
    }
}

/// <summary>The grain storage and reminder contract on a real SQLite file.</summary>
public sealed class SqliteGrainStorageTests : GrainStorageContractTests
{
    private readonly TempDirectory _directory = new();

    protected override Task<Dictionary<string, string>> StoreSettingsAsync() =>
        Task.FromResult(new Dictionary<string, string> { ["Nightshift:Store:Path"] = Path.Combine(_directory.Path, "grains.db") });

    public override async ValueTask DisposeAsync()
    {
        await base.DisposeAsync();
        _directory.Dispose();
    }
}

/// <summary>The grain storage and reminder contract on a real PostgreSQL server.</summary>
public sealed class PostgresGrainStorageTests : GrainStorageContractTests
{
    private string? _connectionString;

    protected override async Task<Dictionary<string, string>> StoreSettingsAsync()
    {
        _connectionString ??= await (await PostgresServer.SharedAsync()).CreateDatabaseAsync();
        return new Dictionary<string, string> { ["Nightshift:Store:ConnectionString"] = _connectionString };
    }
}
