using System.Collections.Immutable;
using Microsoft.Extensions.Time.Testing;
using Nightshift.Batches;
using Nightshift.Pools;

namespace Nightshift.Tests.Pools;

/// <summary>Teams' and users' limits and the fairness between teams, in the Orleans-free limiter with a fake clock.</summary>
public sealed class LimitStackTests
{
    private static readonly BatchOwner Alice = new("alice", "research");
    private static readonly BatchOwner Bob = new("bob", "research");
    private static readonly BatchOwner Carol = new("carol", "support");

    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 2, 3, 0, 0, TimeSpan.Zero));

    [Fact]
    public void ATeamAtItsLimit_WaitsWithoutHoldingUpAnotherTeam()
    {
        var limiter = Limiter(maxRunning: 10);
        limiter.Limits.Teams["research"] = new LimitSpec(3, null, null);
        limiter.Register("alice-1", 100, 1, owner: Alice);
        limiter.Register("bob-1", 100, 5, owner: Bob);
        limiter.Register("carol-1", 100, 1, owner: Carol);

        var granted = Granted(limiter);

        Assert.Equal(3, granted.GetValueOrDefault("alice-1") + granted.GetValueOrDefault("bob-1"));
        Assert.Equal(7, granted["carol-1"]);
        Assert.Equal(3, Assert.Single(limiter.LimitUsages()).Running);
    }

    [Fact]
    public void AUsersOwnModelLimit_TakesPrecedenceOverItsTeamsForThatModel_AndItsCallsDoNotCountThere()
    {
        var limiter = Limiter(maxRunning: 20);
        limiter.Limits.Teams["research"] = new LimitSpec(null, ImmutableDictionary<string, ModelLimit>.Empty.Add("m", new ModelLimit(2)), null);
        limiter.Limits.Users["alice"] = new LimitSpec(null, ImmutableDictionary<string, ModelLimit>.Empty.Add("m", new ModelLimit(6)), null);
        limiter.Register("alice-1", 100, 1, owner: Alice);
        limiter.Register("bob-1", 100, 1, owner: Bob);

        var granted = Granted(limiter);

        Assert.Equal((6, 2), (granted["alice-1"], granted["bob-1"]));
        var usages = limiter.LimitUsages();
        Assert.Equal(2, usages.Single(u => u.Scope == LimitScope.Team).RunningByModel["m"]);
        Assert.Equal(6, usages.Single(u => u.Scope == LimitScope.User).RunningByModel["m"]);
    }

    [Fact]
    public void TeamsShareThePoolByWeight_WhateverTheirNumberOfBatches_ThenTheirBatchesShareTheirPart()
    {
        var limiter = Limiter(maxRunning: 8);
        limiter.Register("research-1", 1000, 1, owner: Alice);
        limiter.Register("research-2", 1000, 1, owner: Alice);
        limiter.Register("research-3", 1000, 1, owner: Bob);
        limiter.Register("support-1", 1000, 1, owner: Carol);

        var equal = Granted(limiter);
        Assert.Equal(4, equal["support-1"]);
        Assert.Equal(4, equal.Where(g => g.Key.StartsWith("research", StringComparison.Ordinal)).Sum(g => g.Value));

        var weighted = Limiter(maxRunning: 8);
        weighted.Limits.Teams["support"] = new LimitSpec(null, null, 3);
        weighted.Register("research-1", 1000, 1, owner: Alice);
        weighted.Register("support-1", 1000, 1, owner: Carol);
        var shares = Granted(weighted);
        Assert.Equal((2, 6), (shares["research-1"], shares["support-1"]));
    }

    [Fact]
    public void ALoweredLimit_TakesTheHotSlotsOverItBack()
    {
        var limiter = Limiter(maxRunning: 10);
        limiter.Register("alice-1", 100, 1, owner: Alice);
        Assert.Equal(10, Granted(limiter)["alice-1"]);

        limiter.Limits.Users["alice"] = new LimitSpec(4, null, null);
        var revoked = Assert.Single(limiter.Revocations(poolPaused: false));

        Assert.Equal(("alice-1", 6), (revoked.BatchId, revoked.Tokens.Count));
        Assert.Empty(limiter.Grant());
    }

    [Fact]
    public void ATeamsRequestRate_PacesItsBatches_WithColdSlots_WhileAnotherTeamRunsHot()
    {
        var limiter = Limiter(maxRunning: 10);
        limiter.Limits.Set(LimitScope.Team, "research", new LimitSpec(null, null, null, Rpm: 120));
        limiter.Register("alice-1", 100, 1, owner: Alice);
        limiter.Register("carol-1", 8, 1, owner: Carol);

        var grants = limiter.Grant().ToDictionary(grant => grant.BatchId, grant => grant.Leases, StringComparer.Ordinal);

        // A burst of one second's budget (2 calls), cold; the rest of the pool goes to the other team, hot.
        Assert.Equal(2, grants["alice-1"].Count);
        Assert.All(grants["alice-1"], lease => Assert.False(lease.Hot));
        Assert.Equal(8, grants["carol-1"].Count);
        Assert.All(grants["carol-1"], lease => Assert.True(lease.Hot));

        // A slot freed finds the budget spent until it refills (the other team has nothing more to run).
        limiter.Release(new SlotRelease("alice-1", grants["alice-1"][0].Token, ItemTerminal: true, RateLimitedFor: null));
        Assert.Empty(limiter.Grant());
        _time.Advance(TimeSpan.FromSeconds(0.5));
        Assert.Equal(("alice-1", 1), limiter.Grant().Select(grant => (grant.BatchId, grant.Leases.Count)).Single());
    }

    [Fact]
    public void AUsersOwnModelRate_OutranksItsTeamsRateForThatModel()
    {
        var limiter = Limiter(maxRunning: 10);
        limiter.Limits.Set(LimitScope.Team, "research", new LimitSpec(null, ImmutableDictionary<string, ModelLimit>.Empty.Add("m", new ModelLimit(null, Rpm: 60)), null));
        limiter.Limits.Set(LimitScope.User, "alice", new LimitSpec(null, ImmutableDictionary<string, ModelLimit>.Empty.Add("m", new ModelLimit(null, Rpm: 180)), null));
        limiter.Register("alice-1", 100, 1, owner: Alice);
        limiter.Register("bob-1", 100, 1, owner: Bob);

        // One second's burst of each budget: alice's own 3, bob's team's 1.
        var granted = Granted(limiter);
        Assert.Equal((3, 1), (granted["alice-1"], granted["bob-1"]));
    }

    [Fact]
    public void InAPoolOfSeveralModels_ABatchCountsUnderTheModelItsLinesName()
    {
        var limiter = Limiter(maxRunning: 10);
        limiter.Limits.Set(LimitScope.Team, "research", new LimitSpec(null, ImmutableDictionary<string, ModelLimit>.Empty.Add("big", new ModelLimit(1)), null));
        limiter.Register("alice-big", 100, 1, owner: Alice, models: ["big"]);
        limiter.Register("alice-small", 100, 1, owner: Alice, models: ["small"]);

        var granted = Granted(limiter);

        Assert.Equal((1, 9), (granted["alice-big"], granted["alice-small"]));
    }

    [Fact]
    public void ABatchWhoseLinesNameSeveralModels_CountsEachCallUnderEveryOneOfTheirLimits_SoNoneIsPassed()
    {
        var limiter = Limiter(maxRunning: 10);
        var models = ImmutableDictionary<string, ModelLimit>.Empty.Add("big", new ModelLimit(2)).Add("small", new ModelLimit(3));
        limiter.Limits.Set(LimitScope.Team, "research", new LimitSpec(null, models, null));
        limiter.Register("alice-mixed", 100, 1, owner: Alice, models: ["big", "small"]);
        limiter.Register("bob-small", 100, 1, owner: Bob, models: ["small"]);

        var granted = Granted(limiter);

        // The mixed batch's calls may be any of its models: two fill the team's limit for big, and count under small too.
        Assert.Equal(2, granted["alice-mixed"]);
        Assert.Equal(1, granted.GetValueOrDefault("bob-small"));
        var research = Assert.Single(limiter.LimitUsages(), usage => usage.Name == "research");
        Assert.Equal((2, 3), (research.RunningByModel["big"], research.RunningByModel["small"]));
    }

    private PoolLimiter Limiter(int maxRunning) =>
        new("gpt", new PoolConfig { MaxRunning = maxRunning, Model = new ModelBinding { Model = "m" } }, epoch: 1, _time);

    private static Dictionary<string, int> Granted(PoolLimiter limiter) =>
        limiter.Grant().ToDictionary(grant => grant.BatchId, grant => grant.Leases.Count, StringComparer.Ordinal);
}
