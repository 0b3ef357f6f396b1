using Microsoft.Extensions.Time.Testing;
using Nightshift.Batches;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Storage;

namespace Nightshift.Tests.Storage;

/// <summary>
/// What every item store must do, whatever holds the items: the same tests run against SQLite and
/// PostgreSQL (a subclass per store says how to open one on a fresh database).
/// </summary>
public abstract class ItemStoreContractTests : IAsyncLifetime
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 11, 22, 3, 0, 0, TimeSpan.Zero));
    private IItemStore _store = null!;

    protected TimeProvider Time => _time;

    /// <summary>Prepares an empty database for this test.</summary>
    protected abstract Task CreateDatabaseAsync();

    /// <summary>A new store on this test's database (another process, as far as the store can tell).</summary>
    protected abstract IItemStore NewStore(int maxInterruptions = 5);

    /// <summary>Schema versions recorded, the newest of them, and the Orleans queries installed.</summary>
    protected abstract Task<(long Versions, long Newest, long Queries)> ReadSchemaAsync();

    protected abstract int LatestSchemaVersion { get; }

    /// <summary>The Orleans queries the store installs: grain storage's 4, reminders' 7, and clustering's where the store offers it.</summary>
    protected abstract int OrleansQueries { get; }

    public async ValueTask InitializeAsync()
    {
        await CreateDatabaseAsync();
        _store = NewStore();
        await _store.InitializeAsync(CancellationToken.None);
    }

    public virtual async ValueTask DisposeAsync()
    {
        await ((IAsyncDisposable)_store).DisposeAsync();
        GC.SuppressFinalize(this);
    }

    [Fact]
    public async Task Ingest_IsInvisibleUntilCommitted_AndLeavesNothingWhenAbandoned()
    {
        await using (var session = await _store.BeginIngestAsync("abandoned", "pool", Ct))
        {
            Assert.Null(await session.AddAsync(Item(0, "a"), Ct));
            Assert.Null(await session.AddAsync(Item(1, "b"), Ct));
        }

        Assert.Equal(0, (await _store.CountAsync("abandoned", Ct)).Total);

        await IngestAsync("kept", 3);
        Assert.Equal(3, (await _store.CountAsync("kept", Ct)).Pending);
    }

    [Fact]
    public async Task TwoIngestsOfOneBatch_TheLaterIsRefusedAsBatchExists_AndTheFirstKeepsItsItemsAndSpec()
    {
        var options = new BatchOptions { MaxAttempts = 2, AttemptTimeout = TimeSpan.FromSeconds(40), Priority = 3 };
        await using var first = await _store.BeginIngestAsync("twice", "pool", Ct);
        await using var second = await _store.BeginIngestAsync("twice", "pool", Ct);
        Assert.Null(await first.AddAsync(Item(0, "a"), Ct));
        Assert.Null(await first.AddAsync(Item(1, "b"), Ct));
        await first.CommitAsync(options, "first", Ct);

        var refused = await Assert.ThrowsAsync<BatchExistsException>(async () =>
        {
            await second.AddAsync(Item(0, "c"), Ct);
            await second.CommitAsync(new BatchOptions(), "second", Ct);
        });

        Assert.Equal("twice", refused.BatchId);
        var stored = await _store.GetBatchAsync("twice", Ct);
        Assert.Equal(("pool", 2, options, "first"), (stored!.Record.Pool, stored.Record.ItemCount, stored.Options, stored.Fingerprint));
        Assert.Equal(2, (await _store.CountAsync("twice", Ct)).Total);
        Assert.Null(await _store.GetBatchAsync("never", Ct));
    }

    [Fact]
    public async Task Ingest_ReportsADuplicateCustomId_WithTheLineThatFirstUsedIt()
    {
        await using var session = await _store.BeginIngestAsync("dup", "pool", Ct);
        await session.AddAsync(Item(0, "x"), Ct);
        await session.AddAsync(Item(1, "y"), Ct);

        var error = await session.AddAsync(Item(2, "x"), Ct);

        Assert.NotNull(error);
        Assert.Equal(3, error.Line);
        Assert.Equal("custom_id", error.Field);
        Assert.Contains("first used on line 1", error.Message);
    }

    [Fact]
    public async Task Claim_TakesDueItemsInInputOrder_OnePerLease()
    {
        await IngestAsync("b", 5);

        var claimed = await _store.ClaimAsync("b", 0, [Lease(11), Lease(12), Lease(13)], _time.GetUtcNow(), Ct);

        Assert.Equal([0, 1, 2], claimed.Select(c => c.Index));
        Assert.Equal([11L, 12L, 13L], claimed.Select(c => c.Lease.Token));
        var counts = await _store.CountAsync("b", Ct);
        Assert.Equal((2, 3), (counts.Pending, counts.Leased));
    }

    [Fact]
    public async Task Claim_SkipsItemsWaitingForTheirBackoff()
    {
        await IngestAsync("b", 2);
        var first = (await _store.ClaimAsync("b", 0, [Lease(1)], _time.GetUtcNow(), Ct))[0];
        var retryAt = _time.GetUtcNow() + TimeSpan.FromSeconds(30);
        Assert.True(await _store.RecordAttemptAsync(Attempt("b", first.Index, 1, ItemState.Pending, retryAt), Ct));

        var claimed = await _store.ClaimAsync("b", 0, [Lease(2), Lease(3)], _time.GetUtcNow(), Ct);

        Assert.Equal([1], claimed.Select(c => c.Index));
        Assert.Equal(retryAt, await _store.NextDueAsync("b", 0, Ct));
        _time.Advance(TimeSpan.FromSeconds(30));
        Assert.Equal([0], (await _store.ClaimAsync("b", 0, [Lease(4)], _time.GetUtcNow(), Ct)).Select(c => c.Index));
    }

    [Fact]
    public async Task AnItemEscalated_IsClaimedByItsStageAlone_AndARequeueBringsItBackToTheFirst()
    {
        await IngestAsync("b", 3);
        var first = (await _store.ClaimAsync("b", 0, [Lease(1)], _time.GetUtcNow(), Ct))[0];
        Assert.True(await _store.RecordAttemptAsync(Attempt("b", first.Index, 1, ItemState.Pending, _time.GetUtcNow()) with { Stage = 1 }, Ct));

        Assert.Equal([1, 2], (await _store.ClaimAsync("b", 0, [Lease(2), Lease(3), Lease(4)], _time.GetUtcNow(), Ct)).Select(c => c.Index));
        Assert.Equal(new Dictionary<int, long> { [0] = 2, [1] = 1 }, await _store.CountUnfinishedByStageAsync("b", Ct));
        Assert.Equal(_time.GetUtcNow(), await _store.NextDueAsync("b", 1, Ct));
        Assert.Null(await _store.NextDueAsync("b", 0, Ct));
        var escalated = Assert.Single(await _store.ClaimAsync("b", 1, [Lease(5), Lease(6)], _time.GetUtcNow(), Ct));
        Assert.Equal(0, escalated.Index);

        Assert.True(await _store.RecordAttemptAsync(Attempt("b", 0, 5, ItemState.Failed) with { Stage = 1 }, Ct));
        Assert.Equal(1, await _store.RequeueTerminalAsync("b", new ItemRetryFilter(ItemState.Failed, null), null, Ct));
        Assert.Equal([0], (await _store.ClaimAsync("b", 0, [Lease(7)], _time.GetUtcNow(), Ct)).Select(c => c.Index));
    }

    [Fact]
    public async Task RecordAttempt_IsFencedByTheLeaseToken()
    {
        await IngestAsync("b", 1);
        await _store.ClaimAsync("b", 0, [Lease(7)], _time.GetUtcNow(), Ct);

        Assert.False(await _store.RecordAttemptAsync(Attempt("b", 0, token: 6, ItemState.Succeeded), Ct));
        Assert.Equal(1, (await _store.CountAsync("b", Ct)).Leased);

        Assert.True(await _store.RecordAttemptAsync(Attempt("b", 0, token: 7, ItemState.Succeeded), Ct));
        Assert.False(await _store.RecordAttemptAsync(Attempt("b", 0, token: 7, ItemState.Failed), Ct));

        var result = Assert.Single(await ResultsAsync("b"));
        Assert.Equal(ItemState.Succeeded, result.State);
    }

    [Fact]
    public async Task ExpiredLeases_GoBackToPending()
    {
        await IngestAsync("b", 2);
        await _store.ClaimAsync("b", 0, [Lease(1, expiresIn: TimeSpan.FromSeconds(10)), Lease(2, expiresIn: TimeSpan.FromMinutes(10))], _time.GetUtcNow(), Ct);

        _time.Advance(TimeSpan.FromSeconds(11));
        Assert.Equal([new RequeuedItem(0, Failed: false)], await _store.RequeueExpiredLeasesAsync("b", _time.GetUtcNow(), Ct));

        var counts = await _store.CountAsync("b", Ct);
        Assert.Equal((1, 1), (counts.Pending, counts.Leased));
    }

    [Fact]
    public async Task ExtendedLeases_DoNotExpire_AndALostLeaseIsNotExtended()
    {
        await IngestAsync("b", 2);
        await _store.ClaimAsync("b", 0, [Lease(1, expiresIn: TimeSpan.FromSeconds(10)), Lease(2, expiresIn: TimeSpan.FromSeconds(10))], _time.GetUtcNow(), Ct);

        var extended = await _store.ExtendLeasesAsync(
            [new LeaseExtension("b", 0, 1, _time.GetUtcNow() + TimeSpan.FromSeconds(30)), new LeaseExtension("b", 1, 99, _time.GetUtcNow() + TimeSpan.FromSeconds(30))], Ct);
        _time.Advance(TimeSpan.FromSeconds(11));

        Assert.Equal([new ClaimKey("b", 1)], extended);
        Assert.Equal([new RequeuedItem(1, Failed: false)], await _store.RequeueExpiredLeasesAsync("b", _time.GetUtcNow(), Ct));
        Assert.Empty(await _store.ExtendLeasesAsync([new LeaseExtension("b", 1, 2, _time.GetUtcNow() + TimeSpan.FromSeconds(30))], Ct));
    }

    [Fact]
    public async Task ExtendedLeases_AreKnownByBatchAndToken_SinceTwoBatchesNumberTheirClaimsAlike()
    {
        await IngestAsync("b", 1);
        await IngestAsync("c", 1);
        await _store.ClaimAsync("b", 0, [Lease(1)], _time.GetUtcNow(), Ct);
        await _store.ClaimAsync("c", 0, [Lease(2)], _time.GetUtcNow(), Ct);

        // Batch c's item is held under token 2, not 1: only batch b's claim 1 is extended.
        var extended = await _store.ExtendLeasesAsync(
            [new LeaseExtension("b", 0, 1, _time.GetUtcNow() + TimeSpan.FromSeconds(30)), new LeaseExtension("c", 0, 1, _time.GetUtcNow() + TimeSpan.FromSeconds(30))], Ct);

        Assert.Equal([new ClaimKey("b", 1)], extended);
    }

    [Fact]
    public async Task AnItemInterruptedMaxInterruptionsTimes_FailsWithTheReason()
    {
        var store = NewStore(maxInterruptions: 2);
        await using var owned = (IAsyncDisposable)store;
        await store.InitializeAsync(Ct);
        await using (var session = await store.BeginIngestAsync("poison", "pool", Ct))
        {
            Assert.Null(await session.AddAsync(Item(0, "p"), Ct));
            await session.CommitAsync(new BatchOptions(), null, Ct);
        }

        // Claims given back unstarted (claimed ahead, then paused) are no interruptions.
        for (long token = 11; token <= 13; token++)
        {
            Assert.Single(await store.ClaimAsync("poison", 0, [Lease(token)], _time.GetUtcNow(), Ct));
            Assert.True(await store.ReleaseLeaseAsync("poison", 0, token, interrupted: false, Ct));
        }

        var outcomes = new List<RequeuedItem>();
        for (long token = 1; token <= 2; token++)
        {
            Assert.Single(await store.ClaimAsync("poison", 0, [Lease(token, expiresIn: TimeSpan.FromSeconds(1))], _time.GetUtcNow(), Ct));
            _time.Advance(TimeSpan.FromSeconds(2));
            outcomes.AddRange(await store.RequeueExpiredLeasesAsync("poison", _time.GetUtcNow(), Ct));
        }

        Assert.Equal([new RequeuedItem(0, Failed: false), new RequeuedItem(0, Failed: true)], outcomes);
        var result = Assert.Single(await ResultsAsync("poison", store));
        Assert.Equal(ItemState.Failed, result.State);
        Assert.Contains("interrupted 2 times", result.Error);
    }

    [Fact]
    public async Task ReleasedLease_PutsTheItemBackToPending_OnlyUnderItsToken()
    {
        await IngestAsync("b", 1);
        await _store.ClaimAsync("b", 0, [Lease(7)], _time.GetUtcNow(), Ct);

        Assert.False(await _store.ReleaseLeaseAsync("b", 0, 8, interrupted: true, Ct));
        Assert.True(await _store.ReleaseLeaseAsync("b", 0, 7, interrupted: true, Ct));

        Assert.Equal(1, (await _store.CountAsync("b", Ct)).Pending);
    }

    [Fact]
    public async Task Progress_ListsTheLeasedItemsWithTheirTokens_BesideTheCounts()
    {
        await IngestAsync("p", 4);
        await _store.ClaimAsync("p", 0, [Lease(11), Lease(12), Lease(13)], _time.GetUtcNow(), Ct);
        await _store.RecordAttemptAsync(Attempt("p", 1, 12, ItemState.Succeeded), Ct);

        var (counts, leased) = await _store.ReadProgressAsync("p", Ct);

        Assert.Equal((1L, 2L, 1L), (counts.Pending, counts.Leased, counts.Succeeded));
        Assert.Equal([(0, 11L), (2, 13L)], leased.OrderBy(l => l.Index).Select(l => (l.Index, l.LeaseToken ?? 0)));
    }

    [Fact]
    public async Task UnfinishedBatches_AreThoseWithPendingOrLeasedItems()
    {
        await IngestAsync("done", 1);
        await _store.ClaimAsync("done", 0, [Lease(1)], _time.GetUtcNow(), Ct);
        await _store.RecordAttemptAsync(Attempt("done", 0, 1, ItemState.Succeeded), Ct);
        await IngestAsync("leased", 1);
        await _store.ClaimAsync("leased", 0, [Lease(2)], _time.GetUtcNow(), Ct);
        await IngestAsync("pending", 1);

        Assert.Equal(["leased", "pending"], (await _store.ListUnfinishedBatchesAsync(Ct)).Order());
    }

    [Fact]
    public async Task Restart_LeavesLeasesAlone_AndRequeueAll_PutsEveryLeaseBack_AsAnInterruption()
    {
        await IngestAsync("b", 3);
        await IngestAsync("c", 1);
        await _store.ClaimAsync("b", 0, [Lease(1), Lease(2)], _time.GetUtcNow(), Ct);
        await _store.ClaimAsync("c", 0, [Lease(3)], _time.GetUtcNow(), Ct);

        var restarted = NewStore();
        await using var owned = (IAsyncDisposable)restarted;
        await restarted.InitializeAsync(Ct);
        var counts = await restarted.CountAsync("b", Ct);
        Assert.Equal((1L, 2L), (counts.Pending, counts.Leased));

        // What Recovery/StartupRequeue does when the store belongs to one process.
        Assert.Equal(3, await restarted.RequeueAllLeasesAsync(Ct));
        counts = await restarted.CountAsync("b", Ct);
        Assert.Equal((3L, 0L), (counts.Pending, counts.Leased));
        Assert.Equal(0, (await restarted.CountAsync("c", Ct)).Leased);
        Assert.Equal(0, await restarted.RequeueAllLeasesAsync(Ct));
    }

    [Fact]
    public async Task CancelPending_LeavesRunningItemsAlone()
    {
        await IngestAsync("b", 4);
        await _store.ClaimAsync("b", 0, [Lease(1)], _time.GetUtcNow(), Ct);

        Assert.Equal(3, await _store.CancelPendingAsync("b", Ct));

        var counts = await _store.CountAsync("b", Ct);
        Assert.Equal((0, 1, 3), (counts.Pending, counts.Leased, counts.Cancelled));
    }

    [Fact]
    public async Task RequeueTerminal_PutsThePickedItemsBackWithFreshBudgets_AndMovesTheBatch()
    {
        // Items 0–1 failed validation, 2 failed otherwise, 3 succeeded, 4–5 were cancelled.
        await IngestAsync("b", 6);
        var claimed = await _store.ClaimAsync("b", 0, [Lease(1), Lease(2), Lease(3), Lease(4)], _time.GetUtcNow(), Ct);
        foreach (var item in claimed)
        {
            var (state, error) = item.Index switch { < 2 => (ItemState.Failed, "validation_failed: not JSON"), 2 => (ItemState.Failed, "gave up"), _ => (ItemState.Succeeded, null) };
            await _store.RecordAttemptAsync(Attempt("b", item.Index, item.Lease.Token, state) with { Error = error, RetryState = """{"validation_failures":2}""" }, Ct);
        }

        await _store.CancelPendingAsync("b", Ct);

        Assert.Equal(2, await _store.RequeueTerminalAsync("b", new ItemRetryFilter(ItemState.Failed, "validation_failed"), "bigger", Ct));
        Assert.Equal(new ItemCounts(2, 0, 1, 1, 2, 40, 8), await _store.CountAsync("b", Ct));
        var again = await _store.ClaimAsync("b", 0, [Lease(5), Lease(6), Lease(7)], _time.GetUtcNow(), Ct);
        Assert.Equal([(0, 0, null), (1, 0, null)], again.Select(item => (item.Index, item.Attempts, item.RetryState)));
        Assert.Equal("bigger", (await _store.GetBatchAsync("b", Ct))!.Record.Pool);

        Assert.Equal(1, await _store.RequeueTerminalAsync("b", new ItemRetryFilter(null, "failed"), null, Ct));
        Assert.Equal(2, await _store.RequeueTerminalAsync("b", new ItemRetryFilter(ItemState.Cancelled, null), null, Ct));
        Assert.Equal(0, await _store.RequeueTerminalAsync("b", new ItemRetryFilter(null, null), null, Ct));

        // A code no result has is refused at once, before anything is queued beside other writes.
        Assert.Throws<ArgumentException>(() => { _ = _store.RequeueTerminalAsync("b", new ItemRetryFilter(null, "timeout"), null, Ct); });
        Assert.Equal("bigger", (await _store.GetBatchAsync("b", Ct))!.Record.Pool);
    }

    [Fact]
    public async Task Results_StreamTerminalItemsInInputOrder()
    {
        await IngestAsync("b", 4);
        var claimed = await _store.ClaimAsync("b", 0, [Lease(1), Lease(2), Lease(3), Lease(4)], _time.GetUtcNow(), Ct);
        foreach (var item in claimed.Reverse())
        {
            var state = item.Index == 2 ? ItemState.Failed : ItemState.Succeeded;
            await _store.RecordAttemptAsync(Attempt("b", item.Index, item.Lease.Token, state), Ct);
        }

        var results = await ResultsAsync("b");

        Assert.Equal([0, 1, 2, 3], results.Select(r => r.Index));
        Assert.Equal(ItemState.Failed, results[2].State);
        Assert.Equal(new ItemCounts(0, 0, 3, 1, 0, 40, 8), await _store.CountAsync("b", Ct));
    }

    [Fact]
    public async Task Schema_AppliesOnce_WhenSeveralProcessesStartAtOnce()
    {
        var stores = Enumerable.Range(0, 4).Select(_ => NewStore()).ToList();
        try
        {
            await Task.WhenAll(stores.Select(store => store.InitializeAsync(Ct)));
        }
        finally
        {
            foreach (var store in stores)
            {
                await ((IAsyncDisposable)store).DisposeAsync();
            }
        }

        Assert.Equal((LatestSchemaVersion, LatestSchemaVersion, OrleansQueries), await ReadSchemaAsync());
    }

    [Fact]
    public async Task Ingest_OfManyItems_CatchesADuplicateAfterThousandsOfLines_AndKeepsGoing()
    {
        await using (var session = await _store.BeginIngestAsync("many", "pool", Ct))
        {
            for (var i = 0; i < 5_000; i++)
            {
                Assert.Null(await session.AddAsync(Item(i, $"c{i}"), Ct));
            }

            var duplicate = await session.AddAsync(Item(5_000, "c4321"), Ct);
            Assert.Null(await session.AddAsync(Item(5_001, "c5001"), Ct));

            Assert.Equal(new LineError(5_001, "custom_id", "duplicate custom_id 'c4321' (first used on line 4322)"), duplicate);
            await session.CommitAsync(new BatchOptions(), null, Ct);
        }

        Assert.Equal(5_001, (await _store.CountAsync("many", Ct)).Pending);
        Assert.Equal([4_999, 5_001], (await _store.ClaimAsync("many", 0, [.. Enumerable.Range(1, 5_002).Select(token => Lease(token))], _time.GetUtcNow(), Ct)).TakeLast(2).Select(c => c.Index));
    }

    [Fact]
    public async Task Catalogue_ListsBatchesNewestFirst_ByState_AndPoolsOnce()
    {
        await IngestAsync("older", 1);
        _time.Advance(TimeSpan.FromSeconds(1));
        await IngestAsync("newer", 2);
        await _store.SetBatchStateAsync("older", BatchState.Completed, _time.GetUtcNow(), Ct);
        await _store.RegisterPoolAsync("b-pool", Ct);
        await _store.RegisterPoolAsync("a-pool", Ct);
        await _store.RegisterPoolAsync("b-pool", Ct);

        var all = await _store.ListBatchesAsync(null, 0, 10, Ct);
        var completed = await _store.ListBatchesAsync(BatchState.Completed, 0, 10, Ct);

        Assert.Equal(["newer", "older"], all.Select(b => b.BatchId));
        Assert.Equal((2, BatchState.Running), (all[0].ItemCount, all[0].State));
        Assert.Equal(_time.GetUtcNow(), Assert.Single(completed).FinishedAt);
        Assert.Equal(["newer"], (await _store.ListBatchesAsync(null, 0, 1, Ct)).Select(b => b.BatchId));
        Assert.Equal(["a-pool", "b-pool"], await _store.ListPoolsAsync(Ct));
    }

    [Fact]
    public async Task GetItems_ReportsEachAskedItemsState()
    {
        await IngestAsync("g", 3);
        var claimed = await _store.ClaimAsync("g", 0, [Lease(5), Lease(6)], _time.GetUtcNow(), Ct);
        await _store.RecordAttemptAsync(Attempt("g", claimed[1].Index, 6, ItemState.Succeeded), Ct);

        var items = (await _store.GetItemsAsync("g", [0, 1, 2], Ct)).OrderBy(item => item.Index).ToList();

        Assert.Equal([(ItemState.Leased, 5L), (ItemState.Succeeded, 0L), (ItemState.Pending, 0L)], items.Select(item => (item.State, item.LeaseToken ?? 0)));
        Assert.Equal(10, items[1].InputTokens);
    }

    [Fact]
    public async Task Webhooks_AreEnqueuedOncePerRun_ClaimedByOneProcessAtATime_AndDueAgainAfterAFailure()
    {
        var now = _time.GetUtcNow();
        await _store.EnqueueWebhookAsync(new WebhookDelivery("w", 0, "batch.completed", "http://127.0.0.1/a", 0, now), Ct);
        await _store.EnqueueWebhookAsync(new WebhookDelivery("w", 0, "batch.cancelled", "http://127.0.0.1/other", 0, now), Ct);
        await _store.EnqueueWebhookAsync(new WebhookDelivery("w", 1, "batch.completed", "http://127.0.0.1/a", 0, now + TimeSpan.FromSeconds(1)), Ct);

        // Another process's store claims first; this one finds nothing due until that claim runs out.
        var other = NewStore();
        await using var owned = (IAsyncDisposable)other;
        var claimed = await other.ClaimWebhooksAsync(now + TimeSpan.FromSeconds(2), now + TimeSpan.FromSeconds(30), 10, Ct);
        Assert.Equal([("w", 0, "batch.completed", 1), ("w", 1, "batch.completed", 1)], claimed.Select(d => (d.BatchId, d.Run, d.Event, d.Attempts)));
        Assert.Empty(await _store.ClaimWebhooksAsync(now + TimeSpan.FromSeconds(3), now + TimeSpan.FromSeconds(30), 10, Ct));

        await other.RecordWebhookAsync("w", 0, WebhookDelivery.BatchEnd, WebhookState.Delivered, now, null, Ct);
        await other.RecordWebhookAsync("w", 1, WebhookDelivery.BatchEnd, WebhookState.Pending, now + TimeSpan.FromSeconds(5), "the receiver answered 503", Ct);
        Assert.Empty(await _store.ClaimWebhooksAsync(now + TimeSpan.FromSeconds(4), now + TimeSpan.FromSeconds(30), 10, Ct));
        var again = Assert.Single(await _store.ClaimWebhooksAsync(now + TimeSpan.FromSeconds(5), now + TimeSpan.FromSeconds(30), 10, Ct));
        Assert.Equal((1, 2), (again.Run, again.Attempts));

        var listed = await _store.ListWebhooksAsync("w", Ct);
        Assert.Equal([(0, WebhookState.Delivered, 1, (string?)null), (1, WebhookState.Pending, 2, "the receiver answered 503")],
            listed.Select(w => (w.Run, w.State, w.Attempts, w.LastError)));
        Assert.NotNull(listed[0].DeliveredAt);
    }

    [Fact]
    public async Task AnItemsFailure_IsAnnouncedInTheTransactionOfItsResult_OnlyIfTheResultIsWritten_BesideTheBatchsEnd()
    {
        await IngestAsync("f", 2);
        var now = _time.GetUtcNow();
        await _store.ClaimAsync("f", 0, [Lease(1), Lease(2)], now, Ct);
        Assert.Null(await _store.GetResultAsync("f", 0, Ct));
        WebhookDelivery Failure(int index) => new("f", 0, "item.failed", "http://127.0.0.1/a", 0, now, index);

        Assert.True(await _store.RecordAttemptAsync(Attempt("f", 0, 1, ItemState.Failed) with { Webhook = Failure(0) }, Ct));
        Assert.False(await _store.RecordAttemptAsync(Attempt("f", 1, 9, ItemState.Failed) with { Webhook = Failure(1) }, Ct));
        await _store.EnqueueWebhookAsync(new WebhookDelivery("f", 0, "batch.completed", "http://127.0.0.1/a", 0, now), Ct);

        var claimed = await _store.ClaimWebhooksAsync(now, now + TimeSpan.FromSeconds(30), 10, Ct);
        Assert.Equal([(WebhookDelivery.BatchEnd, "batch.completed"), (0, "item.failed")], claimed.Select(d => (d.Item, d.Event)).Order());
        await _store.RecordWebhookAsync("f", 0, 0, WebhookState.Delivered, now, null, Ct);
        Assert.Equal([(WebhookDelivery.BatchEnd, WebhookState.Pending), (0, WebhookState.Delivered)],
            (await _store.ListWebhooksAsync("f", Ct)).Select(w => (w.Item, w.State)));
        Assert.Equal(("c0", ItemState.Failed), (await _store.GetResultAsync("f", 0, Ct)) is { } result ? (result.CustomId, result.State) : default);
    }

    [Fact]
    public async Task History_ListsEveryAttemptOfAnItem_AResultFencedOffAsDiscarded_AndTheBatchsMaybeBilledCalls()
    {
        await IngestAsync("h", 2);
        var start = _time.GetUtcNow();
        AttemptLog Log(string outcome, bool maybeBilled, int? status) =>
            new(start, TimeSpan.FromMilliseconds(250), "pool", "model-a", outcome, status, status is null ? "timeout" : null, new TokenUsage(7, 3, 1), maybeBilled, maybeBilled ? 40 : 0);

        await _store.ClaimAsync("h", 0, [Lease(1), Lease(2)], start, Ct);
        await _store.LogAttemptAsync("h", 0, 1, Log(AttemptOutcomes.Interrupted, true, null), Ct);
        await _store.ReleaseLeaseAsync("h", 0, 1, interrupted: true, Ct);
        _time.Advance(TimeSpan.FromSeconds(1));
        var again = Assert.Single(await _store.ClaimAsync("h", 0, [Lease(3)], _time.GetUtcNow(), Ct));
        Assert.True(await _store.RecordAttemptAsync(Attempt("h", again.Index, 3, ItemState.Succeeded) with { Log = Log(AttemptOutcomes.Succeeded, false, 200) }, Ct));

        // A result under a claim the item no longer has is discarded, and may have been billed.
        Assert.False(await _store.RecordAttemptAsync(Attempt("h", 1, 9, ItemState.Succeeded) with { Log = Log(AttemptOutcomes.Succeeded, false, 200) }, Ct));

        var item = await _store.GetItemHistoryAsync("h", "c0", Ct);
        Assert.NotNull(item);
        Assert.Equal((0, ItemState.Succeeded, 1, 200), (item.Index, item.State, item.Interruptions, item.StatusCode));
        Assert.Equal([(AttemptOutcomes.Interrupted, true, (int?)null, 40L), (AttemptOutcomes.Succeeded, false, 200, 0L)],
            item.History.Select(attempt => (attempt.Outcome, attempt.MaybeBilled, attempt.StatusCode, attempt.EstimatedTokens)));
        Assert.Equal((start, TimeSpan.FromMilliseconds(250), "pool", "model-a", new TokenUsage(7, 3, 1)),
            (item.History[0].StartedAt, item.History[0].Duration, item.History[0].Pool, item.History[0].Model, item.History[0].Usage));
        Assert.Equal(AttemptOutcomes.Discarded, Assert.Single((await _store.GetItemHistoryAsync("h", "c1", Ct))!.History).Outcome);
        Assert.Null(await _store.GetItemHistoryAsync("h", "nobody", Ct));
        Assert.Equal(new MaybeBilled(2, 40), await _store.GetMaybeBilledAsync("h", Ct));
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static ItemRequest Item(int index, string customId) => new(index, customId, "POST", "/v1/chat/completions", """{"messages":[]}""");

    private ItemLease Lease(long token, TimeSpan? expiresIn = null) => new("pool", token, _time.GetUtcNow() + (expiresIn ?? TimeSpan.FromMinutes(10)), expiresIn ?? TimeSpan.FromMinutes(10));

    private AttemptRecord Attempt(string batch, int index, long token, ItemState state, DateTimeOffset? next = null) =>
        new(batch, index, token, state, 1, 0, next, null, 200, """{"ok":true}""", null, new TokenUsage(10, 2), _time.GetUtcNow());

    private async Task IngestAsync(string batchId, int count)
    {
        await using var session = await _store.BeginIngestAsync(batchId, "pool", Ct);
        for (var i = 0; i < count; i++)
        {
            Assert.Null(await session.AddAsync(Item(i, $"c{i}"), Ct));
        }

        await session.CommitAsync(new BatchOptions(), null, Ct);
    }

    private async Task<List<ItemResult>> ResultsAsync(string batchId, IItemStore? store = null)
    {
        var results = new List<ItemResult>();
        await foreach (var result in (store ?? _store).ReadResultsAsync(batchId, Ct))
        {
            results.Add(result);
        }

        return results;
    }
}
