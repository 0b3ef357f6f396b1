namespace Nightshift.Models;

/// <summary>What a model's tokens cost, per million, in whatever currency the table is kept in.</summary>
public sealed class ModelPrice
{
    /// <summary>Price of a million input tokens that were not served from the prompt cache. Default: 0.</summary>
    public decimal InputPerMillion { get; set; }

    /// <summary>Price of a million output tokens. Default: 0.</summary>
    public decimal OutputPerMillion { get; set; }

    /// <summary>Price of a million input tokens served from the prompt cache. Default: <see cref="InputPerMillion"/>.</summary>
    public decimal? CachedInputPerMillion { get; set; }
}

/// <summary>
/// Prices per model (configuration section <c>Nightshift:Prices:&lt;model&gt;</c>, keyed by the model
/// or deployment name as the pool names it). A model not in the table has no cost, not a cost of zero.
/// </summary>
public sealed class PriceTable
{
    /// <summary>The configuration section the table binds to (its prices are under <c>Prices</c>).</summary>
    public const string Section = "Nightshift";

    /// <summary>The prices by model name (case-insensitive). Default: none.</summary>
    public Dictionary<string, ModelPrice> Prices { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>The cost of <paramref name="usage"/> on <paramref name="model"/>, or <c>null</c> when the model has no price.</summary>
    public decimal? Cost(string model, TokenUsage usage)
    {
        if (!Prices.TryGetValue(model, out var price))
        {
            return null;
        }

        var cached = Math.Min(usage.CachedTokens, usage.InputTokens);
        var total = ((usage.InputTokens - cached) * price.InputPerMillion)
            + (cached * (price.CachedInputPerMillion ?? price.InputPerMillion))
            + (usage.OutputTokens * price.OutputPerMillion);
        return Math.Round(total / 1_000_000m, 6);
    }
}
