using System.Collections.Immutable;

namespace Nightshift.Pools;

/// <summary>The model a pool's items are sent to.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.ModelBinding")]
public sealed record ModelBinding
{
    /// <summary>The provider's name: <c>simulated</c> is built in.</summary>
    [Id(0)] public string Provider { get; init; } = ModelProviders.Simulated;

    /// <summary>The model or deployment name; for an endpoint, it replaces each request body's <c>model</c>.</summary>
    [Id(1)] public string Model { get; init; } = "nightshift-sim";

    /// <summary>
    /// The endpoint's base URL, up to and including its version segment (e.g. <c>https://api.openai.com/v1</c>);
    /// for Azure OpenAI, the resource's URL (<c>https://&lt;resource&gt;.openai.azure.com</c>).
    /// </summary>
    [Id(2)] public string? Endpoint { get; init; }

    /// <summary>The name of the environment variable holding the API key (never the key itself); none sends no key.</summary>
    [Id(3)] public string? ApiKeyEnvironmentVariable { get; init; }
}

/// <summary>Names of the model providers Nightshift knows.</summary>
public static class ModelProviders
{
    public const string Simulated = "simulated";

    /// <summary>Any endpoint that speaks OpenAI's chat completions (OpenAI, vLLM, Ollama, LM Studio, the test mock).</summary>
    public const string OpenAiCompatible = "openai";

    /// <summary>
    /// Azure OpenAI: <see cref="ModelBinding.Endpoint"/> is the resource (<c>https://&lt;resource&gt;.openai.azure.com</c>),
    /// <see cref="ModelBinding.Model"/> the deployment; without a key variable it signs in with Entra ID.
    /// </summary>
    public const string AzureOpenAi = "azure";
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
    /// How long a granted slot stays held without word from its holder. Items renew their leases
    /// (every third of this) while their call runs, so this bounds how long a dead silo's slots and
    /// items stay stuck, not how long a call may take. Default: 30 s.
    /// </summary>
    [Id(4)] public TimeSpan LeaseDuration { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>The model this pool's items are sent to.</summary>
    [Id(5)] public ModelBinding Model { get; init; } = new();

    /// <summary>Requests the pool may start in any minute, across the cluster; <c>null</c> for no budget. Default: none.</summary>
    [Id(6)] public int? Rpm { get; init; }

    /// <summary>
    /// Tokens (input + output, as the provider reports them) the pool may use in any minute; once the
    /// last minute's calls have used them, nothing more starts until they age out. Default: none.
    /// </summary>
    [Id(7)] public long? Tpm { get; init; }
}

/// <summary>The answer to a queue reservation; a refusal carries its reason.</summary>
[GenerateSerializer, Immutable, Alias("nightshift.QueueReservation")]
public sealed record QueueReservation([property: Id(0)] bool Accepted, [property: Id(1)] string? Reason)
{
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
    [property: Id(12)] string? PausedReason = null);

/// <summary>
/// A slot granted to a batch for one item. <see cref="Token"/> is the fencing token: unique per pool
/// across activations, so a result written under a lease that was lost can be told apart.
/// <see cref="WaitingSince"/> is when the batch began waiting for this slot (it had items ready and
/// the pool had no slot for them), or <c>null</c> when a slot was free as soon as it was wanted.
/// </summary>
[GenerateSerializer, Immutable, Alias("nightshift.ItemLease")]
public sealed record ItemLease(
    [property: Id(0)] string Pool,
    [property: Id(1)] long Token,
    [property: Id(2)] DateTimeOffset ExpiresAt,
    [property: Id(3)] TimeSpan Duration,
    [property: Id(4)] DateTimeOffset? WaitingSince = null)
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
/// A freed slot and what its call said about the pool: a 429's wait (<see cref="RateLimitedFor"/>), and
/// <see cref="PausePool"/> when the provider refused the pool itself (401, 404), which pauses it.
/// </summary>
[GenerateSerializer, Immutable, Alias("nightshift.SlotRelease")]
public sealed record SlotRelease(
    [property: Id(0)] string BatchId,
    [property: Id(1)] long Token,
    [property: Id(2)] bool ItemTerminal,
    [property: Id(3)] TimeSpan? RateLimitedFor,
    [property: Id(4)] long Tokens = 0,
    [property: Id(5)] string? PausePool = null);
