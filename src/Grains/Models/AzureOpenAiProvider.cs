using System.ClientModel;
using Azure.AI.OpenAI;
using Azure.Identity;
using Nightshift.Pools;

namespace Nightshift.Models;

/// <summary>
/// <c>azure</c>: Azure OpenAI. <see cref="ModelBinding.Endpoint"/> is the resource (<c>https://&lt;resource&gt;.openai.azure.com</c>),
/// <see cref="ModelBinding.Model"/> the deployment; without a key variable it signs in with Entra ID.
/// </summary>
internal sealed class AzureOpenAiProvider(ModelHttpClients http) : IChatModelProvider
{
    public const string ProviderName = "azure";

    private readonly Lazy<DefaultAzureCredential> _entraId = new(() => new DefaultAzureCredential());

    public string Name => ProviderName;

    public string? Validate(ModelBinding binding) => 0 switch
    {
        _ when ModelBindingReader.EndpointProblem(binding.Endpoint) is { } problem => problem,
        _ when binding.Endpoint is null => $"endpoint: required for the '{ProviderName}' provider",
        _ when binding.Model.Length == 0 => $"model: the deployment name, required for the '{ProviderName}' provider",
        _ => null,
    };

    public IChatModel Create(ModelBinding binding)
    {
        var endpoint = ModelBindingReader.BaseUri(binding.Endpoint, "An Azure OpenAI model needs an endpoint (https://<resource>.openai.azure.com).");
        var options = OpenAiClientModel.WithoutRetries(new AzureOpenAIClientOptions(), http.For(endpoint));

        // No key variable means Entra ID: the host's managed identity, workload identity, or the
        // developer's Azure CLI login, as DefaultAzureCredential finds them.
        var azure = ModelBindingReader.ApiKey(binding) is { } key
            ? new AzureOpenAIClient(endpoint, new ApiKeyCredential(key), options)
            : new AzureOpenAIClient(endpoint, _entraId.Value, options);
        return new OpenAiClientModel(azure.GetChatClient(binding.Model), binding.Model);
    }
}
