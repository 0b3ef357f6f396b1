using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Nightshift.Models;
using Nightshift.Pools;

namespace Nightshift.Tests.Models;

/// <summary>The one place that knows the model providers: their names, each one's rules, and an unknown name refused with the known ones.</summary>
public sealed class ModelProviderRegistryTests : IDisposable
{
    private readonly ServiceProvider _services = new ServiceCollection()
        .AddSingleton<IConfiguration>(new ConfigurationBuilder().Build())
        .AddNightshiftModels()
        .AddNightshiftModels()
        .BuildServiceProvider();

    private IModelProviderCatalog Catalog => _services.GetRequiredService<IModelProviderCatalog>();

    [Fact]
    public void Names_AreEveryRegisteredProvider_OnceEach_InOrder() =>
        Assert.Equal(["anthropic", "azure", "openai", "simulated"], Catalog.Names);

    [Fact]
    public void UnknownProvider_IsRefused_ListingTheKnownOnes()
    {
        var binding = new ModelBinding { Provider = "bedrock", Model = "m" };

        Assert.Equal("provider: 'bedrock' is not known; use 'anthropic', 'azure', 'openai' or 'simulated'", Catalog.Validate(binding));
        var refused = Assert.Throws<NotSupportedException>(() => _services.GetRequiredService<IModelResolver>().Resolve(binding));
        Assert.Contains("'anthropic', 'azure', 'openai' or 'simulated'", refused.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("simulated", null, "", null)]
    [InlineData("openai", null, "gpt-4o", "endpoint: required for the 'openai' provider")]
    [InlineData("openai", "http://localhost:11434/v1", "", null)]
    [InlineData("azure", "https://r.openai.azure.com", "", "model: the deployment name, required for the 'azure' provider")]
    [InlineData("anthropic", null, "claude-sonnet-4-5", null)]
    [InlineData("anthropic", "https://api.anthropic.com", "", "model: the Claude model to ask")]
    [InlineData("anthropic", "file:///tmp", "claude-sonnet-4-5", "endpoint: must be an absolute http(s) URL")]
    public void EachProvider_JudgesItsOwnBinding(string provider, string? endpoint, string model, string? problem)
    {
        var verdict = Catalog.Validate(new ModelBinding { Provider = provider, Endpoint = endpoint, Model = model });

        if (problem is null)
        {
            Assert.Null(verdict);
        }
        else
        {
            Assert.StartsWith(problem, verdict, StringComparison.Ordinal);
        }
    }

    public void Dispose() => _services.Dispose();
}
