using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Nightshift.Batches;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Recovery;
using Nightshift.Storage;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Batches;

/// <summary>The batch's reconcile step on a real SQLite store: what it counts from the store, and what it leaves to the reports.</summary>
public sealed class BatchRecoveryTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 2, 3, 0, 0, TimeSpan.Zero));
    private readonly TempDirectory _directory = new();
    private RelationalItemStore _store = null!;

    public async ValueTask InitializeAsync()
    {
        _store = new RelationalItemStore(Options.Create(new ItemStoreOptions { Path = Path.Combine(_directory.Path, "items.db") }), _time,
            NullLogger<RelationalItemStore>.Instance);
        await _store.InitializeAsync(Ct);
        await using var session = await _store.BeginIngestAsync("b", "pool", Ct);
        for (var i = 0; i < 3; i++)
        {
            Assert.Null(await session.AddAsync(new ItemRequest(i, $"c{i}", "POST", "/v1/chat/completions", """{"messages":[]}"""), Ct));
        }

        await session.CommitAsync(new BatchOptions(), null, Ct);
    }

    public async ValueTask DisposeAsync()
    {
        await ((IAsyncDisposable)_store).DisposeAsync();
        SqliteConnection.ClearAllPools();
        _directory.Dispose();
    }

    [Fact]
    public async Task AResultWhoseReportIsOnItsWay_IsLeftToTheReport_AndCountedFromTheStoreOnlyOnceItWasInFlightAtTheLastReconcile()
    {
        var recovery = new BatchRecovery(_store, "b", _time, NullLogger.Instance);
        var claimed = await _store.ClaimAsync("b", 0, [Lease(1), Lease(2), Lease(3)], _time.GetUtcNow(), Ct);
        var inFlight = claimed.ToDictionary(item => item.Index, item => item.Lease.Token);

        // Item 0's result is durable, its report not yet taken in: the first look leaves it in flight.
        Assert.True(await _store.RecordAttemptAsync(Succeeded(claimed[0]), Ct));
        Assert.Empty(await recovery.ReconcileAsync(inFlight, Ct));
        Assert.Equal(3, inFlight.Count);

        // By the next look its report never came: it is counted from the store. Item 1 went back to pending and
        // was claimed again meanwhile (a new token), so it is new in flight and left alone, though its old claim is gone.
        await _store.ReleaseLeaseAsync("b", claimed[1].Index, claimed[1].Lease.Token, interrupted: false, Ct);
        var again = Assert.Single(await _store.ClaimAsync("b", 0, [Lease(4)], _time.GetUtcNow(), Ct));
        inFlight[again.Index] = again.Lease.Token;
        Assert.True(await _store.RecordAttemptAsync(Succeeded(again), Ct));

        var reconciled = await recovery.ReconcileAsync(inFlight, Ct);

        var (item, outcome) = Assert.Single(reconciled);
        Assert.Equal((0, ItemOutcome.Succeeded), (item.Index, outcome));
        Assert.Equal([1, 2], inFlight.Keys.Order());

        // Item 1's new claim was in flight at that look: now it counts too; item 2, still leased, stays.
        Assert.Equal([1], (await recovery.ReconcileAsync(inFlight, Ct)).Select(entry => entry.Item.Index));
        Assert.Equal([2], inFlight.Keys);
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private ItemLease Lease(long token) => new("pool", token, _time.GetUtcNow() + TimeSpan.FromMinutes(10), TimeSpan.FromMinutes(10));

    private AttemptRecord Succeeded(ClaimedItem item) =>
        new("b", item.Index, item.Lease.Token, ItemState.Succeeded, 1, 0, null, null, 200, """{"ok":true}""", null, new TokenUsage(10, 2), _time.GetUtcNow());
}
