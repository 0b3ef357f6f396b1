using System.Collections.Immutable;
using Nightshift.Batches;

namespace Nightshift.Pools;

/// <summary>
/// The limiter of one model deployment or quota. Every silo's items take their slots here, so the
/// cap on concurrent calls is global.
/// </summary>
public interface IPoolGrain : IGrainWithStringKey
{
    /// <summary>Creates the pool or replaces its configuration; a configuration change also lifts a pause.</summary>
    Task Configure(PoolConfig config);

    /// <summary>The pool's configuration, or <c>null</c> when the pool was never configured.</summary>
    Task<PoolConfig?> GetConfig();

    /// <summary>Live figures: slots in use, items queued, cooldown.</summary>
    Task<PoolSnapshot> GetSnapshot();

    /// <summary>
    /// Reserves room for a new batch's items in the pool's queue. Refused whole, never in part, when
    /// the pool would pass <see cref="PoolConfig.MaxQueued"/>.
    /// </summary>
    Task<QueueReservation> Reserve(string batchId, int itemCount, int priority);

    /// <summary>
    /// Declares a known batch and how many of its items are not yet terminal, replacing what the pool
    /// believed. Called when a batch activation (re)joins the pool. <paramref name="attemptTimeout"/> is
    /// how long one of its calls may run: a slot whose holder stops reporting stays counted that long
    /// past its lease, since its call may still be running at the provider.
    /// </summary>
    /// <remarks>
    /// <paramref name="owner"/>: whose limits (team, user) the batch's calls count against, and which team's share they take;
    /// <paramref name="models"/>: the models they count under for their model limits, each call under every one (<c>null</c>: the pool's).
    /// </remarks>
    Task Register(string batchId, long outstanding, int priority, TimeSpan attemptTimeout, int? maxRunning, BatchOwner? owner, string[]? models);

    /// <summary>Sets (or, with <c>null</c>, removes) a team's or a user's limit in this pool; held and fenced like the cap. Persisted.</summary>
    Task SetLimit(LimitScope scope, string name, LimitSpec? limit);

    /// <summary>Every limit of the pool with the calls running under it now: the teams', then the users', by name.</summary>
    Task<ImmutableArray<LimitUsage>> GetLimits();

    /// <summary>Stops granting slots to any batch until <see cref="Resume"/>; calls running finish. Persisted.</summary>
    Task Pause(string reason);

    /// <summary>Lifts a pause; the batches waiting get slots again.</summary>
    Task Resume();

    /// <summary>Holds or releases a paused batch's share without losing its place in the queue.</summary>
    Task SetPaused(string batchId, bool paused);

    /// <summary>Forgets a batch that was cancelled or has completed.</summary>
    Task Remove(string batchId);

    /// <summary>
    /// Extends leases whose holders are still calling (sent in bulk by each silo's renewer). A lease the
    /// pool does not know (it was granted by a previous activation, before a failover, or it had
    /// expired while its holder lived) is adopted: its call runs, so it counts against the cap.
    /// </summary>
    Task Renew(ImmutableArray<LeaseRenewal> renewals);

    /// <summary>Frees slots whose calls have ended, with what each call's outcome says about the pool.</summary>
    Task Release(ImmutableArray<SlotRelease> releases);

    /// <summary>
    /// Reports calls that ended on hot slots their batch kept and has already started its next item on:
    /// each call's outcome counts as a release's would, and each slot stays held (its lease extended).
    /// A slot the pool does not hold is adopted, as a renewal adopts one, unless its batch gave it back
    /// lately (the report came after the slot's release).
    /// </summary>
    Task Kept(ImmutableArray<SlotRelease> releases);

    /// <summary>
    /// Returns granted slots the batch could not use: it is paused, or none of its items is due yet. The
    /// pool grants the batch nothing more before <paramref name="notBefore"/> (at once when <c>null</c>).
    /// </summary>
    Task ReturnUnused(string batchId, ImmutableArray<long> tokens, DateTimeOffset? notBefore);
}
