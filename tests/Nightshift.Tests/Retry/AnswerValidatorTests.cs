using System.Text.Json;
using Nightshift.Items;

namespace Nightshift.Tests.Retry;

public sealed class AnswerValidatorTests
{
    private const string Plain = """{"model": "m", "messages": []}""";

    [Fact]
    public void ARequestThatAsksForNoJson_IsNotValidated() => Assert.Null(AnswerValidator.For(Plain, batchSchema: null));

    [Theory]
    [InlineData("{\"a\": 1}", null)]
    [InlineData("[1, 2]", "choices[0].message.content is not a JSON object")]
    [InlineData("hello", "choices[0].message.content is not JSON")]
    public void JsonObject_WantsAnObject(string content, string? problem)
    {
        var validator = AnswerValidator.For("""{"messages": [], "response_format": {"type": "json_object"}}""", batchSchema: null)!;

        var found = validator.Problem(Answer(content));

        if (problem is null)
        {
            Assert.Null(found);
        }
        else
        {
            Assert.StartsWith(problem, found, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void TheLinesSchemaAndTheBatchsBothApply_AndTheProblemNamesWhereAndWhich()
    {
        var body = """{"messages": [], "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": {"required": ["a"]}}}}""";
        var validator = AnswerValidator.For(body, batchSchema: """{"properties": {"a": {"type": "string"}}}""")!;

        Assert.Null(validator.Problem(Answer("""{"a": "x"}""")));
        Assert.Contains("required", validator.Problem(Answer("""{"b": "x"}""")), StringComparison.Ordinal);
        Assert.StartsWith("/a: ", validator.Problem(Answer("""{"a": 3}""")), StringComparison.Ordinal);
        Assert.Equal("the answer has no choices[0].message.content string", validator.Problem("""{"choices": []}"""));
    }

    [Fact]
    public void ASchemaThatIsNone_IsNamedAsSuch() =>
        Assert.Contains("'type'", AnswerValidator.SchemaProblem("""{"type": 12}"""), StringComparison.Ordinal);

    private static string Answer(string content) =>
        JsonSerializer.Serialize(new { choices = new[] { new { message = new { role = "assistant", content } } } });
}
