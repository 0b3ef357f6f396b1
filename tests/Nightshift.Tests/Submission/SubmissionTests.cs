using System.Text;
using Nightshift.Batches;
using Nightshift.Submission;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Submission;

public sealed class SubmissionTests(ClusterFixture fixture) : IClassFixture<ClusterFixture>
{
    private const string Pool = "submissions";

    private NightshiftCluster Cluster => fixture.Cluster;

    public static TheoryData<string, byte[], long, string?, string> BadInputs()
    {
        var valid = Jsonl.Line("ok-1", "hello");
        var other = Jsonl.Line("ok-2", "hello");
        var huge = Jsonl.Line("huge", new string('x', 10 * 1024 * 1024));
        return new TheoryData<string, byte[], long, string?, string>
        {
            { "empty file", [], 1, null, "the input is empty" },
            { "blank line", Utf8($"{valid}\n\n{other}\n"), 2, null, "blank line" },
            { "whitespace line", Utf8($"{valid}\n   \t\n"), 2, null, "blank line" },
            { "malformed JSON", Utf8($"{valid}\n{{\"custom_id\": \"x\", \"body\": {{\n"), 2, null, "malformed JSON" },
            { "not an object", Utf8("[1, 2, 3]\n"), 1, null, "expected a JSON object, found an array" },
            { "custom_id a number", Utf8("""{"custom_id": 17, "body": {}}""" + "\n"), 1, "custom_id", "must be a string, found a number" },
            { "custom_id missing", Utf8("""{"method": "POST", "body": {}}""" + "\n"), 1, "custom_id", "missing" },
            { "custom_id empty", Utf8("""{"custom_id": "", "body": {}}""" + "\n"), 1, "custom_id", "must not be empty" },
            { "body missing", Utf8($"{valid}\n" + """{"custom_id": "b", "method": "POST", "url": "/v1/chat/completions"}""" + "\n"), 2, "body", "missing" },
            { "body a string", Utf8("""{"custom_id": "b", "body": "hello"}""" + "\n"), 1, "body", "must be a JSON object, found a string" },
            { "stream true", Utf8($"{valid}\n" + """{"custom_id": "s", "body": {"model": "m", "stream": true, "messages": []}}""" + "\n"), 2, "body.stream", "streaming is not supported" },
            { "stream a string", Utf8("""{"custom_id": "s", "body": {"stream": "yes"}}""" + "\n"), 1, "body.stream", "must be false when present, found a string" },
            { "method GET", Utf8("""{"custom_id": "b", "method": "GET", "body": {}}""" + "\n"), 1, "method", "'GET' is not supported" },
            { "url unsupported", Utf8("""{"custom_id": "b", "url": "/v1/embeddings", "body": {}}""" + "\n"), 1, "url", "'/v1/embeddings' is not supported" },
            { "duplicate custom_id", Utf8($"{valid}\n{other}\n{valid}\n"), 3, "custom_id", "duplicate custom_id 'ok-1' (first used on line 1)" },
            { "10 MB line", Utf8($"{valid}\n{huge}\n{other}\n"), 2, null, "longer than the limit of 1048576 bytes" },
            { "10 MB last line without newline", Utf8($"{valid}\n{huge}"), 2, null, "longer than the limit" },
            { "invalid UTF-8", [.. Utf8($"{valid}\n{{\"custom_id\": \"b\", \"body\": {{\"text\": \""), 0xC3, 0x28, .. Utf8("\"}}\n")], 2, null, "not valid UTF-8" },
        };
    }

    [Theory]
    [MemberData(nameof(BadInputs), DisableDiscoveryEnumeration = true)]
    public async Task BadInput_IsRejectedWhole_NamingTheLine_AndNothingIsWritten(string name, byte[] input, long line, string? field, string message)
    {
        await Cluster.CreatePoolAsync(Pool, maxRunning: 4);
        var batchId = "bad-" + Guid.NewGuid().ToString("n");

        var result = await Cluster.Submitter.SubmitAsync(batchId, Pool, new BatchOptions(), new MemoryStream(input), Ct);

        Assert.False(result.Accepted, name);
        Assert.Equal(SubmissionRejection.InvalidInput, result.Rejection);
        var error = result.Errors[0];
        Assert.Equal(line, error.Line);
        Assert.Equal(field, error.Field);
        Assert.Contains(message, error.Message);
        await AssertNothingWrittenAsync(batchId);
    }

    [Fact]
    public async Task ManyBadLines_AreAllReported()
    {
        await Cluster.CreatePoolAsync(Pool, maxRunning: 4);
        var input = $"{Jsonl.Line("a", "x")}\n[]\n{Jsonl.Line("b", "x")}\n{{}}\n";

        var result = await Cluster.Submitter.SubmitAsync("many-bad", Pool, new BatchOptions(), Jsonl.Stream(input), Ct);

        Assert.Equal([2L, 4L], result.Errors.Select(e => e.Line));
        await AssertNothingWrittenAsync("many-bad");
    }

    [Fact]
    public async Task UnknownPool_IsRejected_AndNothingIsWritten()
    {
        var result = await Cluster.Submitter.SubmitAsync("no-pool", "no-such-pool", new BatchOptions(), Jsonl.Stream(Jsonl.Lines(3)), Ct);

        Assert.Equal(SubmissionRejection.UnknownPool, result.Rejection);
        Assert.Contains("no-such-pool", result.Reason);
        Assert.Equal(0, (await Cluster.Store.CountAsync("no-pool", Ct)).Total);
    }

    [Fact]
    public async Task ASecondSubmissionUnderTheSameId_IsRejected()
    {
        await Cluster.CreatePoolAsync(Pool, maxRunning: 4);
        var first = await Cluster.Submitter.SubmitAsync("twice", Pool, new BatchOptions(), Jsonl.Stream(Jsonl.Lines(2)), Ct);
        var second = await Cluster.Submitter.SubmitAsync("twice", Pool, new BatchOptions(), Jsonl.Stream(Jsonl.Lines(5)), Ct);

        Assert.True(first.Accepted);
        Assert.Equal(SubmissionRejection.BatchExists, second.Rejection);
        Assert.Equal(2, (await Cluster.Grains.GetGrain<IBatchGrain>("twice").GetStatus()).Total);
    }

    [Fact]
    public async Task CrLfLines_AndAMissingFinalNewline_AreAccepted()
    {
        await Cluster.CreatePoolAsync(Pool, maxRunning: 4);
        var input = $"{Jsonl.Line("a", "x")}\r\n{Jsonl.Line("b", "y")}";

        var result = await Cluster.Submitter.SubmitAsync("crlf", Pool, new BatchOptions(), Jsonl.Stream(input), Ct);

        Assert.True(result.Accepted, result.Reason);
        Assert.Equal(2, result.ItemCount);
    }

    private async Task AssertNothingWrittenAsync(string batchId)
    {
        Assert.Equal(0, (await Cluster.Store.CountAsync(batchId, Ct)).Total);
        Assert.Equal(BatchState.NotFound, (await Cluster.Grains.GetGrain<IBatchGrain>(batchId).GetStatus()).State);
    }

    private static byte[] Utf8(string text) => Encoding.UTF8.GetBytes(text);

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
