using Nightshift.Batches;

namespace Nightshift.Tests.Fixtures;

public static class Batches
{
    /// <summary>Polls a batch until it has finished, failing the test if it takes longer than <paramref name="timeout"/>.</summary>
    public static async Task<BatchStatus> WaitUntilFinishedAsync(this IBatchGrain batch, TimeSpan timeout, Nightshift.Storage.IItemStore? store = null)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (true)
        {
            var status = await batch.GetStatus();
            if (status.IsFinished)
            {
                return status;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new TimeoutException($"batch {status.BatchId} did not finish within {timeout}: {status}; store: {(store is null ? "?" : await store.CountAsync(status.BatchId, CancellationToken.None))}");
            }

            await Task.Delay(50, TestContext.Current.CancellationToken);
        }
    }
}
