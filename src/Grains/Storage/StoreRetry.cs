using Microsoft.Extensions.Logging;

namespace Nightshift.Storage;

/// <summary>
/// Rides out a lost connection or a restarting server: an operation that fails transiently (as the
/// dialect judges it) is tried again with exponential backoff until <paramref name="tolerance"/> has passed.
/// </summary>
internal sealed partial class StoreRetry(Func<Exception, bool> isTransient, TimeSpan tolerance, TimeProvider time, ILogger logger)
{
    private static readonly TimeSpan FirstDelay = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan LongestDelay = TimeSpan.FromSeconds(2);

    public async Task<T> RunAsync<T>(Func<CancellationToken, Task<T>> operation, CancellationToken cancellationToken)
    {
        var giveUpAt = time.GetUtcNow() + tolerance;
        var delay = FirstDelay;
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await operation(cancellationToken);
            }
            catch (Exception failure) when (isTransient(failure) && time.GetUtcNow() < giveUpAt && !cancellationToken.IsCancellationRequested)
            {
                LogRetrying(logger, attempt, delay.TotalMilliseconds, failure.Message);
                await Task.Delay(delay, time, cancellationToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, LongestDelay.Ticks));
            }
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Item store unavailable (try {Attempt}), trying again in {DelayMs} ms: {Reason}")]
    private static partial void LogRetrying(ILogger logger, int attempt, double delayMs, string reason);
}
