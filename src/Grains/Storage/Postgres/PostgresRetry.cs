using Microsoft.Extensions.Logging;
using Npgsql;

namespace Nightshift.Storage.Postgres;

/// <summary>
/// Rides out a lost connection or a restarting server: an operation that fails transiently is tried
/// again with exponential backoff until <see cref="PostgresStoreOptions.OutageTolerance"/> has passed.
/// </summary>
internal sealed partial class PostgresRetry(TimeSpan tolerance, TimeProvider time, ILogger logger)
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
            catch (Exception failure) when (IsTransient(failure) && time.GetUtcNow() < giveUpAt && !cancellationToken.IsCancellationRequested)
            {
                LogRetrying(logger, attempt, delay.TotalMilliseconds, failure.Message);
                await Task.Delay(delay, time, cancellationToken);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, LongestDelay.Ticks));
            }
        }
    }

    /// <summary>
    /// Failures that another try can cure: the connection broke, the server is shutting down or
    /// starting, or it is out of connections. Errors in the statement itself are not among them.
    /// </summary>
    public static bool IsTransient(Exception failure) => failure switch
    {
        PostgresException postgres => postgres.IsTransient || postgres.SqlState.StartsWith("57P", StringComparison.Ordinal) || postgres.SqlState.StartsWith("08", StringComparison.Ordinal),
        NpgsqlException npgsql => npgsql.IsTransient || npgsql.InnerException is IOException or System.Net.Sockets.SocketException,
        _ => false,
    };

    [LoggerMessage(Level = LogLevel.Warning, Message = "PostgreSQL unavailable (try {Attempt}), trying again in {DelayMs} ms: {Reason}")]
    private static partial void LogRetrying(ILogger logger, int attempt, double delayMs, string reason);
}
