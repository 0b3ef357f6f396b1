using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Nightshift.Diagnostics;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Diagnostics;

/// <summary>A silo whose simulated model fails and rate-limits some calls, with a pool small enough that batches wait for slots.</summary>
public sealed class FaultyModelHost : ApiHost
{
    public const int Cap = 2;

    protected override IReadOnlyDictionary<string, string?> Settings => new Dictionary<string, string?>
    {
        ["Nightshift:Simulated:ErrorRate"] = "0.15",
        ["Nightshift:Simulated:RateLimitRate"] = "0.1",
        ["Nightshift:Simulated:RetryAfter"] = "00:00:00.020",
        ["Nightshift:Pools:traced:MaxRunning"] = $"{Cap}",
        ["Nightshift:Pools:traced:CooldownSeconds"] = "0.02",
        ["Nightshift:Pools:traced:SlowStartSeconds"] = "0",
    };
}

/// <summary>An in-process ActivityListener and MeterListener see what an OpenTelemetry pipeline subscribed to "Nightshift" would export.</summary>
public sealed class TelemetryTests(FaultyModelHost host) : IClassFixture<FaultyModelHost>
{
    private const string Pool = "traced";

    [Fact]
    public async Task ABatch_EmitsSpansForSubmissionExecutionSlotWaitsAndModelCalls_AndTheMetricsOfItsPool()
    {
        var spans = new ConcurrentQueue<Activity>();
        using var activities = new ActivityListener
        {
            ShouldListenTo = source => source.Name == NightshiftTelemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = spans.Enqueue,
        };
        ActivitySource.AddActivityListener(activities);

        var measurements = new ConcurrentQueue<(string Instrument, double Value, Dictionary<string, object?> Tags)>();
        using var meters = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == NightshiftTelemetry.Name)
                {
                    listener.EnableMeasurementEvents(instrument);
                }
            },
        };
        meters.SetMeasurementEventCallback<long>((i, value, tags, _) => measurements.Enqueue((i.Name, value, Tags(tags))));
        meters.SetMeasurementEventCallback<int>((i, value, tags, _) => measurements.Enqueue((i.Name, value, Tags(tags))));
        meters.SetMeasurementEventCallback<double>((i, value, tags, _) => measurements.Enqueue((i.Name, value, Tags(tags))));
        meters.Start();

        const int items = 60;
        using var content = new StringContent(Jsonl.Lines(items, "otel"), Encoding.UTF8, "application/x-ndjson");
        var submitted = await host.Http.PostAsync($"/v1/batches?pool={Pool}&maxAttempts=1&baseDelaySeconds=0.01", content, Ct);
        submitted.EnsureSuccessStatusCode();
        var batchId = (await submitted.Content.ReadFromJsonAsync<JsonElement>(Ct)).GetProperty("id").GetString()!;

        // The gauges are read while the batch runs, as a scrape would read them.
        JsonElement batch;
        do
        {
            meters.RecordObservableInstruments();
            await Task.Delay(20, Ct);
            batch = await host.Http.GetFromJsonAsync<JsonElement>($"/v1/batches/{batchId}", Ct);
        }
        while (batch.GetProperty("state").GetString() != "completed");

        var finished = batch.GetProperty("counts");
        var (succeeded, failed) = (finished.GetProperty("succeeded").GetInt64(), finished.GetProperty("failed").GetInt64());
        Assert.Equal(items, succeeded + failed);
        Assert.True(failed > 0, "the simulated model's 15 % errors failed no item (maxAttempts=1)");

        var ofBatch = spans.Where(s => Equals(s.GetTagItem(NightshiftTelemetry.Tags.BatchId), batchId)).ToList();
        var submit = Assert.Single(ofBatch, s => s.OperationName == "nightshift.batch.submit");
        Assert.Equal(Pool, submit.GetTagItem(NightshiftTelemetry.Tags.Pool));
        Assert.Equal(items, submit.GetTagItem(NightshiftTelemetry.Tags.ItemCount));

        var executions = ofBatch.Where(s => s.OperationName == "nightshift.item.execute").ToList();
        Assert.True(executions.Count >= items, $"{executions.Count} item execution spans for {items} items");
        Assert.All(executions, e => Assert.Null(e.Parent));
        Assert.Equal(succeeded, executions.Count(e => Equals(e.GetTagItem(NightshiftTelemetry.Tags.Outcome), "succeeded")));
        Assert.Equal(failed, executions.Count(e => Equals(e.GetTagItem(NightshiftTelemetry.Tags.Outcome), "failed")));

        var executionIds = executions.Select(e => e.SpanId).ToHashSet();
        var calls = spans.Where(s => s.ParentSpanId != default && executionIds.Contains(s.ParentSpanId) && s.Kind == ActivityKind.Client).ToList();
        Assert.Equal(executions.Count, calls.Count);
        Assert.All(calls, call =>
        {
            Assert.Equal("chat nightshift-sim", call.DisplayName);
            Assert.Equal("chat", call.GetTagItem("gen_ai.operation.name"));
            Assert.Equal("nightshift-sim", call.GetTagItem("gen_ai.request.model"));
            Assert.Equal("simulated", call.GetTagItem("gen_ai.provider.name"));
        });
        var answered = calls.Where(c => c.Status != ActivityStatusCode.Error).ToList();
        Assert.Equal(succeeded, answered.Count);
        Assert.All(answered, call =>
        {
            Assert.True((long)call.GetTagItem("gen_ai.usage.input_tokens")! > 0);
            Assert.True((long)call.GetTagItem("gen_ai.usage.output_tokens")! > 0);
        });
        Assert.Contains(calls, c => Equals(c.GetTagItem("error.type"), "429"));
        Assert.Contains(calls, c => Equals(c.GetTagItem("error.type"), "500"));

        // With 60 items for 2 slots the batch waits; a wait span exists only where the lease says it waited.
        var waits = spans.Where(s => s.OperationName == "nightshift.pool.slot_wait" && s.ParentSpanId != default && executionIds.Contains(s.ParentSpanId)).ToList();
        Assert.NotEmpty(waits);
        Assert.True(waits.Count < executions.Count, "every item waited, even the first ones granted to a free pool");
        Assert.All(waits, w => Assert.True(w.Duration > TimeSpan.Zero));

        var ofPool = measurements.Where(m => Equals(m.Tags.GetValueOrDefault("nightshift.pool"), Pool)).ToList();
        double Sum(string instrument) => ofPool.Where(m => m.Instrument == instrument).Sum(m => m.Value);
        Assert.Equal(succeeded, Sum("nightshift.item.completed"));
        Assert.Equal(failed, Sum("nightshift.item.failed"));
        Assert.True(Sum("nightshift.pool.rate_limited") > 0);
        Assert.Equal(calls.Count(c => Equals(c.GetTagItem("error.type"), "429")), Sum("nightshift.pool.rate_limited"));
        Assert.True(Sum("nightshift.pool.cooldowns") > 0);
        Assert.Contains(ofPool, m => m.Instrument == "nightshift.item.retries" && Equals(m.Tags["nightshift.retry.reason"], "rate_limited"));
        Assert.Equal(executions.Count, ofPool.Count(m => m.Instrument == "nightshift.pool.slot_wait.duration"));
        Assert.Contains(ofPool, m => m.Instrument == "nightshift.pool.slot_wait.duration" && m.Value > 0);
        Assert.Equal(calls.Count, ofPool.Count(m => m.Instrument == "gen_ai.client.operation.duration"));
        Assert.Equal(2 * succeeded, ofPool.Count(m => m.Instrument == "gen_ai.client.token.usage"));
        Assert.Contains(ofPool, m => m.Instrument == "gen_ai.client.token.usage" && Equals(m.Tags["gen_ai.token.type"], "output"));

        var running = ofPool.Where(m => m.Instrument == "nightshift.pool.running").Select(m => m.Value).ToList();
        Assert.Contains(running, r => r > 0);
        Assert.All(running, r => Assert.InRange(r, 0, FaultyModelHost.Cap));
        Assert.Contains(ofPool, m => m.Instrument == "nightshift.pool.queued" && m.Value > 0);
        Assert.Contains(ofPool, m => m.Instrument == "nightshift.pool.cap" && m.Value == FaultyModelHost.Cap);
    }

    [Fact]
    public async Task TheScrapeEndpoint_ServesNightshiftsAndOrleansMetrics_InPrometheusFormat()
    {
        using var content = new StringContent(Jsonl.Lines(5, "scrape"), Encoding.UTF8, "application/x-ndjson");
        (await host.Http.PostAsync($"/v1/batches?pool={Pool}&maxAttempts=1", content, Ct)).EnsureSuccessStatusCode();
        var text = await Eventually.MatchesAsync(() => host.Http.GetStringAsync("/metrics", Ct), text => text.Contains("nightshift_pool_running", StringComparison.Ordinal),
            text => $"no pool gauge in the scrape:\n{text}", TimeSpan.FromSeconds(20), TimeSpan.FromMilliseconds(200));

        Assert.Contains("nightshift_pool_running{", text, StringComparison.Ordinal);
        Assert.Contains("nightshift_pool=\"traced\"", text, StringComparison.Ordinal);
        Assert.Contains("gen_ai_client_operation_duration_seconds_bucket{", text, StringComparison.Ordinal);
        Assert.Contains("otel_scope_name=\"Microsoft.Orleans\"", text, StringComparison.Ordinal);
    }

    private static Dictionary<string, object?> Tags(ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var copy = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var (key, value) in tags)
        {
            copy[key] = value;
        }

        return copy;
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;
}
