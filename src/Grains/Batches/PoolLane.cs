using Nightshift.Pools;

namespace Nightshift.Batches;

/// <summary>
/// A batch's dispatch on one pool: its own (stage 0), or the <c>n</c>th pool of its escalation list (stage
/// <c>n</c>), which takes the items whose answers failed validation <c>n</c> times. Each lane has its pool's
/// limiter, slots and model, and claims only its stage's items; most batches have one lane.
/// </summary>
internal sealed class PoolLane(int stage, string pool, IPoolGrain grain, SlotDispatcher dispatcher, ModelBinding model)
{
    public int Stage { get; } = stage;

    public string Pool { get; } = pool;

    public IPoolGrain Grain { get; } = grain;

    public SlotDispatcher Dispatcher { get; } = dispatcher;

    /// <summary>The model the pool calls (a line's own where the pool lists several).</summary>
    public ModelBinding Model { get; } = model;

    /// <summary>The claim out, if any: one at a time per lane.</summary>
    public Task Claiming { get; set; } = Task.CompletedTask;

    /// <summary>Ends of calls on kept slots, not yet reported to the pool.</summary>
    public List<SlotRelease> Kept { get; } = [];

    public Task ReportingKept { get; set; } = Task.CompletedTask;

    /// <summary>The registration out, if any: one at a time per lane.</summary>
    public Task Registering { get; set; } = Task.CompletedTask;

    /// <summary>
    /// The items of this stage not finished (pending or running), in a batch of several lanes: what the lane
    /// registers with its pool. Counted from the store on activation and at every maintenance, and moved by the
    /// reports in between (an escalated item leaves one lane for the next).
    /// </summary>
    public long Unfinished { get; set; }
}
