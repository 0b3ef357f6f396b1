using Microsoft.ML.Tokenizers;
using Nightshift.Models;

namespace Nightshift.Tests.Models;

/// <summary>A call's tokens as estimated before it starts, for the pool's token budget.</summary>
public sealed class TokenEstimateTests
{
    private static readonly Tokenizer O200k = TiktokenTokenizer.CreateForModel("gpt-4o");

    [Fact]
    public void Messages_AreCountedWithTheModelsTokenizer_PlusTheCompletionCeiling()
    {
        const string body = """{"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"Summarise the history of Rome."}],"max_tokens":40}""";

        var expected = 3 + (3 + O200k.CountTokens("system") + O200k.CountTokens("Be brief."))
            + (3 + O200k.CountTokens("user") + O200k.CountTokens("Summarise the history of Rome.")) + 40;
        Assert.Equal(expected, TokenEstimate.For(body, "gpt-4o-mini", defaultMaxTokens: 512));
    }

    [Fact]
    public void MaxCompletionTokens_WinsOverMaxTokens_AndTheDefaultFillsIn()
    {
        const string messages = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
        var prompt = TokenEstimate.For("{" + messages + ",\"max_tokens\":0}", "gpt-4o", 512);

        Assert.Equal(prompt + 7, TokenEstimate.For("{" + messages + ",\"max_tokens\":99,\"max_completion_tokens\":7}", "gpt-4o", 512));
        Assert.Equal(prompt + 512, TokenEstimate.For("{" + messages + "}", "gpt-4o", 512));
    }

    [Fact]
    public void ContentParts_CountTheirTextAndAFixedPricePerImage()
    {
        const string body = """{"messages":[{"role":"user","content":[{"type":"text","text":"What is this?"},{"type":"image_url","image_url":{"url":"data:,"}}]}],"max_tokens":0}""";

        Assert.Equal(3 + 3 + O200k.CountTokens("user") + O200k.CountTokens("What is this?") + 85, TokenEstimate.For(body, "gpt-4.1", 512));
    }

    [Fact]
    public void AnUnknownModel_IsCountedAtFourCharactersAToken()
    {
        const string body = """{"messages":[{"role":"user","content":"0123456789abcdef"}],"max_tokens":0}""";

        Assert.Equal(3 + 3 + 1 + 4, TokenEstimate.For(body, "my-local-llama", 512));
    }
}
