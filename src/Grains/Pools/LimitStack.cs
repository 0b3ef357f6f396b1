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
/// <remarks>
/// A team's or user's <c>rpm</c> / <c>tpm</c> is a token bucket of its own with a burst of <paramref name="burst"/> of budget,
/// checked with the pool's at every grant; a batch one of them paces gets no hot slot (every call starts with a grant).
/// </remarks>
internal sealed class LimitStack(TimeSpan burst)
{
    /// <summary>The rate budgets of the limits that have one, by whose they are (and the model's, for a model's); made on first use, so a changed limit starts anew.</summary>
    private readonly Dictionary<(LimitScope Scope, string Name, string? Model), (TokenBucket? Requests, TokenBucket? Tokens)> _buckets = [];

    public Dictionary<string, LimitSpec> Teams { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, LimitSpec> Users { get; } = new(StringComparer.Ordinal);

    public bool IsEmpty => Teams.Count == 0 && Users.Count == 0;

    /// <summary>Whether some limit counts tokens: then every grant carries a token estimate.</summary>
    public bool CountsTokens => Teams.Values.Concat(Users.Values).Any(limit => limit.Tpm is not null || limit.Models?.Values.Any(model => model.Tpm is not null) == true);

    /// <summary>Sets or (with <c>null</c>) removes a limit; its rate budgets start anew.</summary>
    public void Set(LimitScope scope, string name, LimitSpec? limit)
    {
        var limits = scope == LimitScope.Team ? Teams : Users;
        if (limit is null)
        {
            limits.Remove(name);
        }
        else
        {
            limits[name] = limit;
        }

        foreach (var key in _buckets.Keys.Where(key => key.Scope == scope && key.Name == name).ToList())
        {
            _buckets.Remove(key);
        }
    }

    /// <summary>Whether a rate limit applies to a batch of <paramref name="owner"/>: its calls then start only with a grant.</summary>
    public bool Paces(BatchOwner? owner, IReadOnlyList<string> models) => Applying(owner, models).Any(limit => limit.Rpm is not null || limit.Tpm is not null);

    /// <summary>Takes one call and <paramref name="tokens"/> from every rate budget that applies to <paramref name="owner"/>'s calls on <paramref name="models"/>, or nothing when one has no room.</summary>
    public bool TryStart(BatchOwner? owner, IReadOnlyList<string> models, double tokens, DateTimeOffset now)
    {
        var budgets = Applying(owner, models).Select(limit => Buckets(limit.Key, limit.Rpm, limit.Tpm, now)).ToList();
        if (budgets.Any(budget => budget.Requests?.Fits(1, now) == 0 || budget.Tokens?.Fits(tokens, now) == 0))
        {
            return false;
        }

        foreach (var (requests, budget) in budgets)
        {
            requests?.Take(1, now);
            budget?.Take(tokens, now);
        }

        return true;
    }

    /// <summary>Gives back what a granted call that never ran was charged, or (<paramref name="unused"/> false) the difference between its charge and the tokens it used.</summary>
    public void Refund(BatchOwner? owner, IReadOnlyList<string> models, double charged, double used, bool unused, DateTimeOffset now)
    {
        foreach (var limit in Applying(owner, models))
        {
            if (_buckets.TryGetValue(limit.Key, out var budget))
            {
                if (unused)
                {
                    budget.Requests?.Adjust(1, now);
                }

                budget.Tokens?.Adjust(charged - used, now);
            }
        }
    }

    /// <summary>A team's share of the pool beside the other teams' (batches with no team share one).</summary>
    public double Weight(string? team) => team is not null && Teams.TryGetValue(team, out var limit) && limit.Weight is > 0 and var weight ? weight : 1;

    /// <summary>
    /// How many more calls a batch of <paramref name="owner"/> may start on <paramref name="models"/> (each call counts
    /// under every one) with <paramref name="usage"/> running; negative when a limit is already passed (it was lowered), by how much.
    /// </summary>
    public int Room(BatchOwner? owner, IReadOnlyList<string> models, Usage usage)
    {
        var room = int.MaxValue;
        if (owner?.Team is { } team && Teams.TryGetValue(team, out var teamLimit))
        {
            if (teamLimit.MaxRunning is { } max)
            {
                room = Math.Min(room, max - usage.Get(LimitScope.Team, team, null));
            }

            foreach (var model in models)
            {
                if (!UserLimitsModel(owner, model) && teamLimit.Models?.GetValueOrDefault(model)?.MaxRunning is { } teamModel)
                {
                    room = Math.Min(room, teamModel - usage.Get(LimitScope.Team, team, model));
                }
            }
        }

        if (owner?.User is { } user && Users.TryGetValue(user, out var userLimit))
        {
            if (userLimit.MaxRunning is { } max)
            {
                room = Math.Min(room, max - usage.Get(LimitScope.User, user, null));
            }

            foreach (var model in models)
            {
                if (userLimit.Models?.GetValueOrDefault(model)?.MaxRunning is { } userModel)
                {
                    room = Math.Min(room, userModel - usage.Get(LimitScope.User, user, model));
                }
            }
        }

        return room;
    }

    /// <summary>What <paramref name="running"/> calls of a batch of <paramref name="owner"/> on <paramref name="models"/> count under: their team's and user's whole limits once, each model's.</summary>
    public void Count(Usage usage, BatchOwner? owner, IReadOnlyList<string> models, int running)
    {
        if (owner?.Team is { } team)
        {
            usage.Add(LimitScope.Team, team, null, running);
            foreach (var model in models)
            {
                if (!UserLimitsModel(owner, model))
                {
                    usage.Add(LimitScope.Team, team, model, running);
                }
            }
        }

        if (owner?.User is { } user)
        {
            usage.Add(LimitScope.User, user, null, running);
            foreach (var model in models)
            {
                usage.Add(LimitScope.User, user, model, running);
            }
        }
    }

    /// <summary>Every limit with what runs under it, teams first, by name.</summary>
    public ImmutableArray<LimitUsage> Snapshot(Usage usage, DateTimeOffset now) =>
    [
        .. Teams.OrderBy(t => t.Key, StringComparer.Ordinal).Select(t => Of(LimitScope.Team, t.Key, t.Value, usage, now)),
        .. Users.OrderBy(u => u.Key, StringComparer.Ordinal).Select(u => Of(LimitScope.User, u.Key, u.Value, usage, now)),
    ];

    private LimitUsage Of(LimitScope scope, string name, LimitSpec limit, Usage usage, DateTimeOffset now)
    {
        var budget = _buckets.GetValueOrDefault((scope, name, null));
        return new(scope, name, limit, usage.Get(scope, name, null), usage.ByModel(scope, name), budget.Requests?.Level(now), budget.Tokens?.Level(now));
    }

    /// <summary>
    /// The rates that apply to a call of <paramref name="owner"/> on <paramref name="models"/>, each with its budget's key: the
    /// team's, the team's for each model (unless the user has a limit for it), the user's, the user's for each model.
    /// </summary>
    private IEnumerable<((LimitScope, string, string?) Key, double? Rpm, double? Tpm)> Applying(BatchOwner? owner, IReadOnlyList<string> models)
    {
        if (owner?.Team is { } team && Teams.TryGetValue(team, out var teamLimit))
        {
            yield return ((LimitScope.Team, team, null), teamLimit.Rpm, teamLimit.Tpm);
            foreach (var model in models)
            {
                if (!UserLimitsModel(owner, model) && teamLimit.Models?.GetValueOrDefault(model) is { } teamModel)
                {
                    yield return ((LimitScope.Team, team, model), teamModel.Rpm, teamModel.Tpm);
                }
            }
        }

        if (owner?.User is { } user && Users.TryGetValue(user, out var userLimit))
        {
            yield return ((LimitScope.User, user, null), userLimit.Rpm, userLimit.Tpm);
            foreach (var model in models)
            {
                if (userLimit.Models?.GetValueOrDefault(model) is { } userModel)
                {
                    yield return ((LimitScope.User, user, model), userModel.Rpm, userModel.Tpm);
                }
            }
        }
    }

    private (TokenBucket? Requests, TokenBucket? Tokens) Buckets((LimitScope, string, string?) key, double? rpm, double? tpm, DateTimeOffset now)
    {
        if (!_buckets.TryGetValue(key, out var budget))
        {
            _buckets[key] = budget = (Bucket(rpm, 1, now), Bucket(tpm, 0, now));
        }

        return budget;
    }

    /// <summary>A budget of <paramref name="perMinute"/>, full at first, with a burst of <c>burst</c> of it (at least <paramref name="least"/>).</summary>
    private TokenBucket? Bucket(double? perMinute, double least, DateTimeOffset now)
    {
        if (perMinute is not { } rate)
        {
            return null;
        }

        var capacity = Math.Max(least, rate / 60 * burst.TotalSeconds);
        return new TokenBucket(rate / 60, capacity, capacity, now);
    }

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
