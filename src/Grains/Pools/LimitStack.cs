using System.Collections.Immutable;
using Nightshift.Batches;

namespace Nightshift.Pools;

/// <summary>
/// The teams' and users' limits of one pool, on top of its cap (Orleans-free, held by <see cref="PoolLimiter"/>). A
/// call of a batch owned by (user, team) on a model is admitted only while every limit that applies has room: the
/// team's, the team's for the model, the user's, the user's for the model. Precedence (LiteLLM's
/// <c>model_max_parallel_requests</c>): when the user has a limit of its own for the model, the team's limit for that
/// model neither applies to the user's calls nor counts them. The team's and the user's whole limits always do.
/// </summary>
internal sealed class LimitStack
{
    public Dictionary<string, LimitSpec> Teams { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, LimitSpec> Users { get; } = new(StringComparer.Ordinal);

    public bool IsEmpty => Teams.Count == 0 && Users.Count == 0;

    /// <summary>A team's share of the pool beside the other teams' (batches with no team share one).</summary>
    public double Weight(string? team) => team is not null && Teams.TryGetValue(team, out var limit) && limit.Weight is > 0 and var weight ? weight : 1;

    /// <summary>
    /// How many more calls a batch of <paramref name="owner"/> may start on <paramref name="model"/> with
    /// <paramref name="usage"/> running; negative when a limit is already passed (it was lowered), by how much.
    /// </summary>
    public int Room(BatchOwner? owner, string model, Usage usage)
    {
        var room = int.MaxValue;
        if (owner?.Team is { } team && Teams.TryGetValue(team, out var teamLimit))
        {
            if (teamLimit.MaxRunning is { } max)
            {
                room = Math.Min(room, max - usage.Get(LimitScope.Team, team, null));
            }

            if (!UserLimitsModel(owner, model) && teamLimit.Models?.TryGetValue(model, out var teamModel) == true)
            {
                room = Math.Min(room, teamModel - usage.Get(LimitScope.Team, team, model));
            }
        }

        if (owner?.User is { } user && Users.TryGetValue(user, out var userLimit))
        {
            if (userLimit.MaxRunning is { } max)
            {
                room = Math.Min(room, max - usage.Get(LimitScope.User, user, null));
            }

            if (userLimit.Models?.TryGetValue(model, out var userModel) == true)
            {
                room = Math.Min(room, userModel - usage.Get(LimitScope.User, user, model));
            }
        }

        return room;
    }

    /// <summary>What <paramref name="running"/> calls of a batch of <paramref name="owner"/> on <paramref name="model"/> count under.</summary>
    public void Count(Usage usage, BatchOwner? owner, string model, int running)
    {
        if (owner?.Team is { } team)
        {
            usage.Add(LimitScope.Team, team, null, running);
            if (!UserLimitsModel(owner, model))
            {
                usage.Add(LimitScope.Team, team, model, running);
            }
        }

        if (owner?.User is { } user)
        {
            usage.Add(LimitScope.User, user, null, running);
            usage.Add(LimitScope.User, user, model, running);
        }
    }

    /// <summary>Every limit with what runs under it, teams first, by name.</summary>
    public ImmutableArray<LimitUsage> Snapshot(Usage usage) =>
    [
        .. Teams.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => Of(LimitScope.Team, t.Key, t.Value, usage)),
        .. Users.OrderBy(u => u.Key, StringComparer.Ordinal).Select(u => Of(LimitScope.User, u.Key, u.Value, usage)),
    ];

    private static LimitUsage Of(LimitScope scope, string name, LimitSpec limit, Usage usage) =>
        new(scope, name, limit, usage.Get(scope, name, null), usage.ByModel(scope, name));

    private bool UserLimitsModel(BatchOwner owner, string model) =>
        owner.User is { } user && Users.TryGetValue(user, out var limit) && limit.Models?.ContainsKey(model) == true;

    /// <summary>Calls running per team, per user, and per team or user and model.</summary>
    public sealed class Usage
    {
        private readonly Dictionary<(LimitScope Scope, string Name, string? Model), int> _running = [];

        public int Get(LimitScope scope, string name, string? model) => _running.GetValueOrDefault((scope, name, model));

        public void Add(LimitScope scope, string name, string? model, int running) =>
            _running[(scope, name, model)] = _running.GetValueOrDefault((scope, name, model)) + running;

        public ImmutableDictionary<string, int> ByModel(LimitScope scope, string name) =>
            _running.Where(entry => entry.Key.Scope == scope && entry.Key.Name == name && entry.Key.Model is not null)
                .ToImmutableDictionary(entry => entry.Key.Model!, entry => entry.Value, StringComparer.Ordinal);
    }
}
