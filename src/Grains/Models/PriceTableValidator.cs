using Microsoft.Extensions.Options;

namespace Nightshift.Models;

/// <summary>Stops the host at start when a price is negative, naming the key.</summary>
internal sealed class PriceTableValidator : IValidateOptions<PriceTable>
{
    public ValidateOptionsResult Validate(string? name, PriceTable options)
    {
        var errors = options.Prices
            .Where(p => p.Value.InputPerMillion < 0 || p.Value.OutputPerMillion < 0 || p.Value.CachedInputPerMillion < 0)
            .Select(p => $"Nightshift:Prices:{p.Key}: prices per million tokens must not be negative.")
            .ToList();
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }
}
