using Microsoft.Extensions.DependencyInjection;
using Nightshift.Pools;

namespace Nightshift.Models;

/// <summary><c>simulated</c>: the built-in <see cref="SimulatedModel"/>, one for every binding (its model name is only echoed).</summary>
// The service provider, not the model: the API process and the CLI's argument check know this provider
// by name without hosting the simulated model, which only a silo registers.
internal sealed class SimulatedProvider(IServiceProvider services) : IChatModelProvider
{
    public const string ProviderName = "simulated";

    public string Name => ProviderName;

    public string? Validate(ModelBinding binding) => null;

    public IChatModel Create(ModelBinding binding) => services.GetRequiredService<SimulatedModel>();
}
