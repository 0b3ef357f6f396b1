using System.Text.Json;
using Nightshift.Models;
using Nightshift.Storage;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Cli;

/// <summary>
/// The one-shot <c>run</c> command as a user runs it: the real executable in a child process, a real
/// SQLite file, SIGKILL and SIGTERM. The simulated model appends every call it starts to a call log
/// that outlives the process, so calls are counted from outside the silo.
/// </summary>
public sealed class RunCommandTests : IDisposable
{
    private readonly RunWorkspace _run = new();

    private string Input => _run.Input;

    private string Output => _run.Output;

    private string CallLog => _run.CallLog;

    [Fact]
    public async Task Run_WritesOneResultPerLine_InInputOrder_AndExitsZero()
    {
        var input = Jsonl.Lines(300, "ok");
        await File.WriteAllTextAsync(Input, input, Ct);

        using var silo = _run.Start(RunWorkspace.Latency(1, 3), "--max-running", "8");
        Assert.Equal(0, await silo.WaitForExitAsync(TimeSpan.FromMinutes(2)));

        var lines = await File.ReadAllLinesAsync(Output, Ct);
        var inputs = input.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(300, lines.Length);
        for (var i = 0; i < lines.Length; i++)
        {
            var line = JsonDocument.Parse(lines[i]).RootElement;
            Assert.Equal($"ok-{i}", line.GetProperty("custom_id").GetString());
            Assert.StartsWith("batch_req_", line.GetProperty("id").GetString());
            var response = line.GetProperty("response");
            Assert.Equal(200, response.GetProperty("status_code").GetInt32());
            Assert.Equal(SimulatedModel.ExpectedContent(Jsonl.Body(inputs[i])),
                response.GetProperty("body").GetProperty("choices")[0].GetProperty("message").GetProperty("content").GetString());
            Assert.Equal(JsonValueKind.Null, line.GetProperty("error").ValueKind);
        }

        Assert.Equal(300, (await File.ReadAllLinesAsync(CallLog, Ct)).Length);

        // The same file again is the same batch, finished: no call is made, and options given now are named as ignored.
        using var again = _run.Start(RunWorkspace.Latency(1, 3), "--max-running", "8", "--max-attempts", "7");
        Assert.Equal(0, await again.WaitForExitAsync(TimeSpan.FromMinutes(2)));
        Assert.Contains("Resuming batch", again.Output);
        Assert.Contains("ignored now: --max-attempts 7 (the batch's: 5)", again.Output);
        Assert.Equal(300, (await File.ReadAllLinesAsync(Output, Ct)).Length);
        Assert.Equal(300, (await File.ReadAllLinesAsync(CallLog, Ct)).Length);
    }

    [Fact]
    public async Task Run_ExitsOne_WhenItemsFail_AndEachFailureCarriesItsReason()
    {
        await File.WriteAllTextAsync(Input, Jsonl.Lines(20, "doomed"), Ct);
        var environment = new Dictionary<string, string>(RunWorkspace.Latency(0, 0)) { ["Nightshift__Simulated__ErrorRate"] = "1" };

        using var silo = _run.Start(environment, "--max-attempts", "1");
        Assert.Equal(1, await silo.WaitForExitAsync(TimeSpan.FromMinutes(2)));

        var lines = await File.ReadAllLinesAsync(Output, Ct);
        Assert.Equal(20, lines.Length);
        Assert.All(lines, text =>
        {
            var line = JsonDocument.Parse(text).RootElement;
            Assert.Equal(500, line.GetProperty("response").GetProperty("status_code").GetInt32());
            Assert.Contains("gave up after 1 attempts", line.GetProperty("error").GetProperty("message").GetString());
        });
        Assert.Equal(20, (await File.ReadAllLinesAsync(CallLog, Ct)).Length);
    }

    [Fact]
    public async Task Run_WithASchema_AsksAgainOnceForAnAnswerThatIsNotJson_ThenFailsItAsValidationFailed()
    {
        await File.WriteAllTextAsync(Input, Jsonl.Lines(5, "typed"), Ct);
        var schema = Path.Combine(Path.GetDirectoryName(Input)!, "schema.json");
        await File.WriteAllTextAsync(schema, """{"type": "object", "required": ["answer"]}""", Ct);

        using var silo = _run.Start(RunWorkspace.Latency(0, 0), "--schema", schema);
        Assert.Equal(1, await silo.WaitForExitAsync(TimeSpan.FromMinutes(2)));

        Assert.All(await File.ReadAllLinesAsync(Output, Ct), text =>
        {
            var error = JsonDocument.Parse(text).RootElement.GetProperty("error");
            Assert.Equal("validation_failed", error.GetProperty("code").GetString());
            Assert.Contains("is not JSON", error.GetProperty("message").GetString(), StringComparison.Ordinal);
        });
        Assert.Equal(10, (await File.ReadAllLinesAsync(CallLog, Ct)).Length);
    }

    [Fact]
    public async Task Run_RejectsBadInput_WithExitTwo_NamingTheLine_AndWritesNothing()
    {
        await File.WriteAllTextAsync(Input, Jsonl.Line("a", "x") + "\n" + Jsonl.Line("b", "y") + "\n{\"custom_id\": \"c\"}\n", Ct);

        using var silo = _run.Start(RunWorkspace.Latency(0, 0));
        Assert.Equal(2, await silo.WaitForExitAsync(TimeSpan.FromMinutes(2)));

        Assert.Contains("line 3, field 'body': missing", silo.Output);
        Assert.False(File.Exists(Output));
        Assert.False(File.Exists(CallLog));
        Assert.Equal(0, (await _run.CountsAsync()).Values.Sum());
    }

    [Fact]
    public async Task Run_RefusesASchemaThatIsNotOne_WithExitTwo_AndWritesNothing_ThenRunsWithAGoodOne()
    {
        // The file is staged while the silo starts; a refusal found there must leave nothing behind, so the same
        // file with a good schema is a batch of its own from its first line.
        await File.WriteAllTextAsync(Input, Jsonl.Lines(20, "ok"), Ct);
        var schema = Path.Combine(Path.GetDirectoryName(Input)!, "schema.json");
        await File.WriteAllTextAsync(schema, """{"type": 12}""", Ct);

        using var refused = _run.Start(RunWorkspace.Latency(0, 0), "--schema", schema);
        Assert.Equal(2, await refused.WaitForExitAsync(TimeSpan.FromMinutes(2)));
        Assert.Contains("schema: not a JSON Schema", refused.Output);
        Assert.False(File.Exists(Output));
        Assert.False(File.Exists(CallLog));
        Assert.Equal(0, (await _run.CountsAsync()).Values.Sum());

        await File.WriteAllTextAsync(schema, """{"type": "object"}""", Ct);
        using var run = _run.Start(RunWorkspace.Latency(0, 0), "--schema", schema);
        Assert.Equal(1, await run.WaitForExitAsync(TimeSpan.FromMinutes(2)));
        Assert.DoesNotContain("Resuming batch", run.Output);
        Assert.Equal(20, (await File.ReadAllLinesAsync(Output, Ct)).Length);
        Assert.Equal(20, (await _run.CountsAsync()).Values.Sum());
    }

    [Fact]
    public async Task Run_KilledWithSigkill_ResumesWhenRunAgain_WithoutCallingFinishedItemsAgain()
    {
        const int items = 1_500;
        const int maxRunning = 8;
        await File.WriteAllTextAsync(Input, Jsonl.Lines(items, "crash"), Ct);

        using (var first = _run.Start(RunWorkspace.Latency(15, 25), "--max-running", $"{maxRunning}"))
        {
            await _run.WaitUntilSucceededAsync(first, items / 3);
            first.Kill();
        }

        var doneBeforeKill = await _run.SucceededCustomIdsAsync();
        Assert.InRange(doneBeforeKill.Count, items / 3, items - 1);

        using var second = _run.Start(RunWorkspace.Latency(15, 25), "--max-running", $"{maxRunning}");
        Assert.Equal(0, await second.WaitForExitAsync(TimeSpan.FromMinutes(2)));
        Assert.Contains("Resuming batch", second.Output);

        var results = (await File.ReadAllLinesAsync(Output, Ct)).Select(l => JsonDocument.Parse(l).RootElement).ToList();
        Assert.Equal(Enumerable.Range(0, items).Select(i => $"crash-{i}"), results.Select(r => r.GetProperty("custom_id").GetString()));
        Assert.All(results, r => Assert.Equal(JsonValueKind.Null, r.GetProperty("error").ValueKind));

        var calls = (await File.ReadAllLinesAsync(CallLog, Ct)).GroupBy(id => id).ToDictionary(g => g.Key, g => g.Count());
        Assert.Equal(items, calls.Count);
        Assert.All(doneBeforeKill, id => Assert.Equal(1, calls[id]));
        var repeated = calls.Values.Sum() - items;
        Assert.True(repeated <= maxRunning, $"{repeated} calls were repeated; at most the {maxRunning} in flight at the kill may be");
    }

    [Fact]
    public async Task Run_StoppedWithSigterm_LetsCallsInFlightFinish_ExitsInterrupted_AndResumes()
    {
        const int items = 1_500;
        await File.WriteAllTextAsync(Input, Jsonl.Lines(items, "term"), Ct);

        using (var first = _run.Start(RunWorkspace.Latency(15, 25), "--max-running", "8"))
        {
            await _run.WaitUntilSucceededAsync(first, items / 3);
            first.Terminate();
            Assert.Equal(130, await first.WaitForExitAsync(TimeSpan.FromSeconds(30)));
            Assert.Contains("Run the same command again to resume", first.Output);
        }

        var counts = await _run.CountsAsync();
        Assert.Equal(0, counts.GetValueOrDefault(ItemState.Leased));
        Assert.True(counts.GetValueOrDefault(ItemState.Pending) > 0, "the run was stopped before the end");

        using var second = _run.Start(RunWorkspace.Latency(15, 25), "--max-running", "8");
        Assert.Equal(0, await second.WaitForExitAsync(TimeSpan.FromMinutes(2)));
        Assert.Equal(items, (await File.ReadAllLinesAsync(Output, Ct)).Length);
        Assert.Equal(items, (await File.ReadAllLinesAsync(CallLog, Ct)).Length);
    }

    public void Dispose() => _run.Dispose();

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
