namespace Nightshift.Storage;

/// <summary>Statements that read the same in SQLite and PostgreSQL, so both stores share one text.</summary>
internal static class ItemStoreSql
{
    /// <summary>
    /// Requeues the leased items <paramref name="where"/> selects, or fails those interrupted
    /// @max_interruptions times; returns each item's index and new state.
    /// </summary>
    public static string Requeue(string where) => $"""
        UPDATE ns_items
        SET state = CASE WHEN interruptions + 1 >= @max_interruptions THEN 3 ELSE 0 END,
            error = CASE WHEN interruptions + 1 >= @max_interruptions
                THEN 'interrupted ' || (interruptions + 1) || ' times by the death of the process running it; not tried again (Nightshift:Store:MaxInterruptions)'
                ELSE error END,
            lease_token = NULL, lease_expires_at = NULL, interruptions = interruptions + 1, updated_at = @now
        WHERE {where}
        RETURNING idx, state;
        """;

    /// <summary><see cref="Requeue"/> for a batch's leases expired by @now.</summary>
    public static readonly string RequeueExpired = Requeue("batch_id = @batch AND state = 1 AND lease_expires_at < @now");
}
