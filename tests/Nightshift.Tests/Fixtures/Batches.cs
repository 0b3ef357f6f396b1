using Nightshift.Batches;
using Nightshift.Storage;

namespace Nightshift.Tests.Fixtures;

public static class Batches
{
    /// <summary>Polls a batch until it has finished, failing the test if it takes longer than <paramref name="timeout"/>.</summary>
    public static async Task<BatchStatus> WaitUntilFinishedAsync(this IBatchGrain batch, TimeSpan timeout, IItemStore? store = null)
    {
        ItemCounts? counts = null;
        return await Eventually.MatchesAsync(async () =>
        {
            var status = await batch.GetStatus();
            counts = store is null || status.IsFinished ? null : await store.CountAsync(status.BatchId, TestContext.Current.CancellationToken);
            return status;
        }, status => status.IsFinished, status => $"batch {status.BatchId} not finished: {status}; store: {counts?.ToString() ?? "?"}", timeout, TimeSpan.FromMilliseconds(50));
    }

    /// <summary>Polls a batch until at least <paramref name="succeeded"/> of its items succeeded; fails after a minute.</summary>
    public static Task<BatchStatus> WaitUntilSucceededAsync(this IBatchGrain batch, long succeeded) =>
        Eventually.MatchesAsync(batch.GetStatus, status => status.Succeeded >= succeeded, status => $"fewer than {succeeded} items succeeded: {status}");
}
