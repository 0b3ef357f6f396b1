using System.Collections.Immutable;
using System.Text.Json;

namespace Nightshift.Pools;

/// <summary>The model a pool's items are sent to.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.ModelBinding")]
public sealed record ModelBinding
{
    /// <summary>
    /// The provider's name, one of <see cref="IModelProviderCatalog.Names"/>: <c>simulated</c> (built in),
    /// <c>openai</c> (any OpenAI-compatible endpoint), <c>azure</c> (Azure OpenAI) or <c>anthropic</c>. Default: <c>simulated</c>.
    /// </summary>
    [Id(0)] public string Provider { get; init; } = "simulated";

    /// <summary>The model or deployment name; for an endpoint, it replaces each request body's <c>model</c>.</summary>
    [Id(1)] public string Model { get; init; } = "nightshift-sim";

    /// <summary>
    /// The endpoint's base URL, up to and including its version segment (e.g. <c>https://api.openai.com/v1</c>);
    /// for Azure OpenAI, the resource's URL (<c>https://&lt;resource&gt;.openai.azure.com</c>); for Anthropic, the
    /// API's base URL without a version segment (none: <c>https://api.anthropic.com</c>).
    /// </summary>
    [Id(2)] public string? Endpoint { get; init; }

    /// <summary>The name of the environment variable holding the API key (never the key itself); none sends no key.</summary>
    [Id(3)] public string? ApiKeyEnvironmentVariable { get; init; }

    /// <summary>
    /// Models (or deployments) that share the pool's cap and budgets: a line's <c>body.model</c> picks one of
    /// them (one not listed is refused at submission), a line naming none gets <see cref="Model"/>. <c>null</c>:
    /// every call goes to <see cref="Model"/>.
    /// </summary>
    [Id(4)] public string[]? Models { get; init; }

    /// <summary>The binding a call of the request <paramref name="body"/> uses: for a pool of several <see cref="Models"/>, the one the body names.</summary>
    public ModelBinding For(string body) =>
        Models is { Length: > 0 } models
            ? this with { Model = ModelOf(body) is { } named && models.Contains(named, StringComparer.Ordinal) ? named : Model, Models = null }
            : this;

    /// <summary>The <c>model</c> a request body names, or <c>null</c> when it names none (or is no JSON object).</summary>
    public static string? ModelOf(string body)
    {
        try
        {
            using var request = JsonDocument.Parse(body);
            return request.RootElement.ValueKind == JsonValueKind.Object && request.RootElement.TryGetProperty("model", out var model)
                && model.ValueKind == JsonValueKind.String ? model.GetString() : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

/// <summary>A pool's limits and the model behind it.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.PoolConfig")]
public sealed record PoolConfig
{
    /// <summary>Calls that may run at once across the whole cluster. Default: 16.</summary>
    [Id(0)] public int MaxRunning { get; init; } = 16;

    /// <summary>Items that may wait in the pool across all its batches. Default: 10,000,000.</summary>
    [Id(1)] public long MaxQueued { get; init; } = 10_000_000;

    /// <summary>Cooldown after a 429 that carried no wait of its own. Default: 5 s.</summary>
    [Id(2)] public TimeSpan DefaultCooldown { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>How long the pool takes to ramp from one slot back to <see cref="MaxRunning"/> after a cooldown. Default: 10 s.</summary>
    [Id(3)] public TimeSpan SlowStart { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a granted slot and a claimed item stay held without word from their holder. Items renew
    /// their leases (every third of this) while their call runs, so this bounds how long a dead silo's
    /// items stay stuck, not how long a call may take. A dead (or paused) holder's slot stays counted
    /// this long plus its batch's attempt timeout, since its call may still be running at the provider.
    /// Default: 30 s.
    /// </summary>
    [Id(4)] public TimeSpan LeaseDuration { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The model this pool's items are sent to.</summary>
    [Id(5)] public ModelBinding Model { get; init; } = new();

    /// <summary>
    /// Requests the pool may start per minute across the cluster, paced as a token bucket (see
    /// <see cref="BurstWindow"/>); <c>null</c> to learn it from the provider's headers. Default: none.
    /// </summary>
    [Id(6)] public int? Rpm { get; init; }

    /// <summary>
    /// Tokens (prompt + completion) the pool may use per minute across the cluster, as a token bucket:
    /// each call is charged its estimate when granted and reconciled with the usage the provider reports;
    /// <c>null</c> to learn it from the provider's headers. Default: none.
    /// </summary>
    [Id(7)] public long? Tpm { get; init; }

    /// <summary>
    /// How many seconds of <see cref="Rpm"/> and <see cref="Tpm"/> may be spent at once: each budget is a
    /// token bucket holding this much and refilling smoothly, so a minute's budget is never spent in its
    /// first seconds (providers judge per-minute limits over windows of 1 to 10 s). Default: 1 s.
    /// </summary>
    [Id(8)] public TimeSpan BurstWindow { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>The factor a 429 multiplies the adaptive cap by (at most once per wait window). Default: 0.7.</summary>
    [Id(9)] public double CapDecrease { get; init; } = 0.7;

    /// <summary>Slots each successful call adds back to the adaptive cap, up to <see cref="MaxRunning"/>. Default: 0.5.</summary>
    [Id(10)] public double CapIncreasePerSuccess { get; init; } = 0.5;

    /// <summary>
    /// Shortest window in which 429s count as one: after a decrease, further 429s lower the cap again only
    /// once the 429's wait (or this, if longer) has passed. Default: 1 s.
    /// </summary>
    [Id(11)] public TimeSpan DecreaseWindow { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Consecutive windows of 429s without one successful call that mean the quota is exhausted: the pool
    /// then cools down for the wait and ramps up over <see cref="SlowStart"/>. Default: 3.
    /// </summary>
    [Id(12)] public int ExhaustedAfterWindows { get; init; } = 3;

    /// <summary>A provider wait longer than this means the quota is exhausted (cooldown and slow start). Default: 30 s.</summary>
    [Id(13)] public TimeSpan ExhaustedWait { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// The share of a limit the provider advertises (<c>x-ratelimit-limit-*</c>) that a pool without its own
    /// <see cref="Rpm"/> or <see cref="Tpm"/> adopts. Default: 0.95.
    /// </summary>
    [Id(14)] public double LearnedLimitShare { get; init; } = 0.95;

    /// <summary>
    /// Completion tokens a call's estimate assumes when its request sets neither <c>max_completion_tokens</c>
    /// nor <c>max_tokens</c>. Default: 512.
    /// </summary>
    [Id(15)] public int DefaultMaxTokens { get; init; } = 512;
}

/// <summary>
/// What a provider's answer said about its rate limits (<c>x-ratelimit-limit-*</c>, <c>-remaining-*</c>,
/// <c>-reset-*</c>, for requests and tokens); each figure is <c>null</c> when the answer did not carry it.
/// Limits are per minute, as OpenAI and Azure OpenAI advertise them.
/// </summary>
[GenerateSerializer, Immutable, Alias("nightshift.ProviderRateLimits")]
public sealed record ProviderRateLimits(
    [property: Id(0)] long? LimitRequests,
    [property: Id(1)] long? RemainingRequests,
    [property: Id(2)] TimeSpan? ResetRequests,
    [property: Id(3)] long? LimitTokens,
    [property: Id(4)] long? RemainingTokens,
    [property: Id(5)] TimeSpan? ResetTokens)
{
    /// <summary>The quota is spent: a remaining figure is zero, or the answer carried none at all (nothing says there is room).</summary>
    public bool QuotaSpent => RemainingRequests is null && RemainingTokens is null || RemainingRequests <= 0 || RemainingTokens <= 0;

    /// <summary>
    /// How soon the spent figures are back, as their resets say; <c>null</c> when no figure is spent or a
    /// spent one names no reset.
    /// </summary>
    public TimeSpan? SpentFor
    {
        get
        {
            TimeSpan? longest = null;
            foreach (var (remaining, reset) in (ReadOnlySpan<(long?, TimeSpan?)>)[(RemainingRequests, ResetRequests), (RemainingTokens, ResetTokens)])
            {
                if (remaining <= 0)
                {
                    if (reset is not { } back)
                    {
                        return null;
                    }

                    longest = longest > back ? longest : back;
                }
            }

            return longest;
        }
    }
}

/// <summary>The answer to a queue reservation; a refusal carries its reason.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.QueueReservation")]
public sealed record QueueReservation([property: Id(0)] bool Accepted, [property: Id(1)] string? Reason)
{
    /// <summary>The reservation was accepted.</summary>
    public static QueueReservation Granted { get; } = new(true, null);
}

/// <summary>Live figures of a pool; <see cref="PausedReason"/> is set while the pool is paused, saying why.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.PoolSnapshot")]
public sealed record PoolSnapshot(
    [property: Id(0)] string Name,
    [property: Id(1)] PoolConfig Config,
    [property: Id(2)] int Running,
    [property: Id(3)] long Queued,
    [property: Id(4)] int EffectiveCap,
    [property: Id(5)] DateTimeOffset? CooldownUntil,
    [property: Id(6)] long RateLimited,
    [property: Id(7)] int Batches,
    [property: Id(8)] string Silo,
    [property: Id(9)] DateTimeOffset? RecoveringUntil,
    [property: Id(10)] int RequestsLastMinute,
    [property: Id(11)] long TokensLastMinute,
    [property: Id(12)] string? PausedReason = null,
    [property: Id(13)] RateControlSnapshot? RateControl = null);

/// <summary>Where a rate limit in force came from.</summary>
public enum LimitSource
{
    /// <summary>The pool's own <c>rpm</c> or <c>tpm</c>.</summary>
    Configured = 0,

    /// <summary>A share of what the provider advertises in its <c>x-ratelimit-limit-*</c> headers.</summary>
    Learned = 1,
}

/// <summary>A budget in force (requests or tokens per minute) and its bucket now.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.BudgetSnapshot")]
public sealed record BudgetSnapshot(
    [property: Id(0)] long PerMinute,
    [property: Id(1)] LimitSource Source,
    [property: Id(2)] long? ProviderLimit,
    [property: Id(3)] double Available,
    [property: Id(4)] double Capacity,
    [property: Id(5)] long? ProviderRemaining);

/// <summary>The rate control's live state: the adaptive cap, the waits in force, and each budget.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.RateControlSnapshot")]
public sealed record RateControlSnapshot(
    [property: Id(0)] double AdaptiveCap,
    [property: Id(1)] DateTimeOffset? HeldUntil,
    [property: Id(2)] DateTimeOffset? SlowStartUntil,
    [property: Id(3)] BudgetSnapshot? Requests,
    [property: Id(4)] BudgetSnapshot? Tokens,
    [property: Id(5)] double TokensPerCall,
    [property: Id(6)] double HeldSeconds = 0);

/// <summary>
/// A slot granted to a batch for one item. <see cref="Token"/> is the fencing token: unique per pool
/// across activations, so a result written under a lease that was lost can be told apart.
/// <see cref="WaitingSince"/> is when the batch began waiting for this slot (it had items ready and
/// the pool had no slot for them), or <c>null</c> when a slot was free as soon as it was wanted.
/// <see cref="EstimateWithMaxTokens"/> is set when the pool has a token budget: the holder then estimates its
/// call's tokens before it starts (assuming this many completion tokens when the request names no
/// <c>max_tokens</c>) and reports the estimate when it frees the slot.
/// A <see cref="Hot"/> slot stays with its batch when its call ends: the batch starts its next item on it at
/// once and reports the call's end to the pool afterwards (<see cref="IPoolGrain.Kept"/>), until the pool
/// revokes it. A slot of a pool that paces a budget is never hot: each of its calls passes the buckets.
/// </summary>
[GenerateSerializer, Immutable, Alias("nightshift.ItemLease")]
public sealed record ItemLease(
    [property: Id(0)] string Pool,
    [property: Id(1)] long Token,
    [property: Id(2)] DateTimeOffset ExpiresAt,
    [property: Id(3)] TimeSpan Duration,
    [property: Id(4)] DateTimeOffset? WaitingSince = null,
    [property: Id(5)] int? EstimateWithMaxTokens = null,
    [property: Id(6)] bool Hot = false)
{
    /// <summary>When the pool granted the lease.</summary>
    public DateTimeOffset GrantedAt => ExpiresAt - Duration;

    /// <summary>The pool activation (epoch) that granted the lease: the high half of the token.</summary>
    public long Epoch => Token >> 32;
}

/// <summary>A holder still running its call under <see cref="Token"/>, whose lease now runs to <see cref="ExpiresAt"/>.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.LeaseRenewal")]
public sealed record LeaseRenewal(
    [property: Id(0)] string BatchId,
    [property: Id(1)] long Token,
    [property: Id(2)] DateTimeOffset ExpiresAt);

/// <summary>
/// A freed slot and what its call said about the pool: a 429's wait (<see cref="RateLimitedFor"/>),
/// <see cref="PausePool"/> when the provider refused the pool itself (401, 404), which pauses it, the
/// tokens the call used (<see cref="Tokens"/>, 0 when the provider reported none), the holder's estimate
/// of them made before the call (<see cref="EstimatedTokens"/>), whether the call succeeded, and the
/// provider's rate-limit headers (<see cref="Limits"/>).
/// </summary>
[GenerateSerializer, Immutable, Alias("nightshift.SlotRelease")]
public sealed record SlotRelease(
    [property: Id(0)] string BatchId,
    [property: Id(1)] long Token,
    [property: Id(2)] bool ItemTerminal,
    [property: Id(3)] TimeSpan? RateLimitedFor,
    [property: Id(4)] long Tokens = 0,
    [property: Id(5)] string? PausePool = null,
    [property: Id(6)] long EstimatedTokens = 0,
    [property: Id(7)] bool Succeeded = false,
    [property: Id(8)] ProviderRateLimits? Limits = null);

/// <summary>Whose limit: a team's (every batch its users submit) or one user's.</summary>
public enum LimitScope
{
    /// <summary>A team's limit.</summary>
    Team = 0,

    /// <summary>A user's limit.</summary>
    User = 1,
}

/// <summary>
/// A team's or a user's limits in a pool: at most <paramref name="MaxRunning"/> calls at once, those of
/// <paramref name="Models"/> on each model named there, at most <paramref name="Rpm"/> calls started and
/// <paramref name="Tpm"/> tokens a minute (paced as the pool's budgets are), and (a team's) <paramref name="Weight"/>: its
/// share of the pool beside the other teams' (default 1). Every field optional.
/// </summary>
[GenerateSerializer, Immutable, Alias("nightshift.LimitSpec")]
public sealed record LimitSpec(
    [property: Id(0)] int? MaxRunning,
    [property: Id(1)] ImmutableDictionary<string, ModelLimit>? Models,
    [property: Id(2)] double? Weight,
    [property: Id(3)] double? Rpm = null,
    [property: Id(4)] double? Tpm = null);

/// <summary>A team's or a user's limits for one model: calls at once, calls started and tokens a minute. Every field optional.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.ModelLimit")]
public sealed record ModelLimit(
    [property: Id(0)] int? MaxRunning,
    [property: Id(1)] double? Rpm = null,
    [property: Id(2)] double? Tpm = null);

/// <summary>
/// A limit with the calls that run under it now, in all and per model, and what its own rate budgets hold now
/// (<c>null</c> without that rate, or before its first grant).
/// </summary>
[GenerateSerializer, Immutable, Alias("nightshift.LimitUsage")]
public sealed record LimitUsage(
    [property: Id(0)] LimitScope Scope,
    [property: Id(1)] string Name,
    [property: Id(2)] LimitSpec Limit,
    [property: Id(3)] int Running,
    [property: Id(4)] ImmutableDictionary<string, int> RunningByModel,
    [property: Id(5)] double? RequestsAvailable = null,
    [property: Id(6)] double? TokensAvailable = null);