using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Nightshift.Tests.Fixtures;

namespace Nightshift.Tests.Api;

/// <summary>
/// Batch webhooks end to end: the real <c>serve</c> executable on an SQLite file, a receiver on loopback that
/// records every request it gets (and answers what the test says), and SIGKILL between two attempts.
/// </summary>
public sealed class WebhookTests : IDisposable
{
    private const string Secret = "webhook-test-secret";

    private readonly TempDirectory _directory = new();
    private readonly WebhookReceiver _receiver = new();

    [Fact]
    public async Task AFinishedBatch_IsDeliveredOnceSigned_AlsoWhenTheSiloIsKilledWhileTheDeliveryIsDue_AndARefusedUrlWritesNothing()
    {
        var http = ApiHost.FreePort();
        var store = Path.Combine(_directory.Path, "hooks.db");
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}") };
        var silo = Serve(http, store);
        try
        {
            await SiloProcess.WaitUntilAnsweringAsync(client);
            Assert.Equal(HttpStatusCode.OK, (await client.PutAsync("/v1/pools/p", Json("""{"maxRunning": 8}"""), Ct)).StatusCode);

            // A URL the configuration does not allow, and one that is no http(s) URL: 400 naming the option, nothing written.
            foreach (var url in new[] { "http://127.0.0.2:9/elsewhere", "ftp://127.0.0.1/hooks" })
            {
                var refused = await client.PostAsync($"/v1/batches?pool=p&callbackUrl={Uri.EscapeDataString(url)}", Jsonl(5), Ct);
                Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
                Assert.Contains("callbackUrl", await refused.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
            }

            var none = await client.PostAsync("/v1/batches", Json("""{"pool": "p", "items": [{"custom_id": "a", "body": {"messages": []}}], "options": {"callbackUrl": "http://127.0.0.2:9/x"}}"""), Ct);
            Assert.Equal(HttpStatusCode.BadRequest, none.StatusCode);
            Assert.Contains("callbackUrl", await none.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);
            Assert.Equal(0, JsonDocument.Parse(await client.GetStringAsync("/v1/batches", Ct)).RootElement.GetProperty("items").GetArrayLength());

            // The first delivery is answered 503; the silo is killed before it tries again.
            _receiver.Answers.Enqueue(503);
            var created = await client.PostAsync($"/v1/batches?pool=p&callbackUrl={Uri.EscapeDataString(_receiver.Url)}", Jsonl(30), Ct);
            Assert.Equal(HttpStatusCode.Created, created.StatusCode);
            var location = created.Headers.Location!.OriginalString;
            await Eventually.HoldsAsync(() => _receiver.Received.Count >= 1, () => $"no delivery came. Silo output:\n{silo.Output}");
            silo.Kill();
            await silo.WaitForExitAsync(TimeSpan.FromSeconds(30));
            silo.Dispose();

            silo = Serve(http, store);
            var delivered = await Eventually.MatchesAsync(() => _receiver.Received.Where(hook => hook.AnsweredStatus == 200).ToList(), hooks => hooks.Count > 0,
                _ => $"the restarted silo delivered nothing; received {_receiver.Received.Count}. Silo output:\n{silo.Output}");

            // Nothing more comes once it is delivered.
            await Task.Delay(TimeSpan.FromSeconds(3), Ct);
            var received = _receiver.Received;
            var delivery = Assert.Single(received, hook => hook.AnsweredStatus == 200);
            Assert.Equal(2, received.Count);
            var batchId = location.Split('/')[^1];
            Assert.All(received, hook =>
            {
                Assert.Equal(("POST", "/hooks/batches", "batch.completed", $"{batchId}.0"),
                    (hook.Headers["method"], hook.Headers["path"], hook.Headers["X-Nightshift-Event"], hook.Headers["X-Nightshift-Delivery"]));
                Assert.StartsWith("application/json", hook.Headers["Content-Type"], StringComparison.Ordinal);
                Assert.Equal("sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(Secret), hook.Body)), hook.Headers["X-Nightshift-Signature"]);
            });

            var view = JsonDocument.Parse(delivery.Body).RootElement;
            Assert.Equal((batchId, "completed", 30), (view.GetProperty("id").GetString(), view.GetProperty("state").GetString(), view.GetProperty("counts").GetProperty("succeeded").GetInt32()));
            Assert.Equal(0, view.GetProperty("maybeBilled").GetProperty("calls").GetInt64());

            await SiloProcess.WaitUntilAnsweringAsync(client);
            var webhook = Assert.Single(JsonDocument.Parse(await client.GetStringAsync($"{location}/webhooks", Ct)).RootElement.EnumerateArray());
            Assert.Equal((0, "delivered", 2), (webhook.GetProperty("run").GetInt32(), webhook.GetProperty("state").GetString(), webhook.GetProperty("attempts").GetInt32()));
        }
        finally
        {
            silo.Dispose();
        }
    }

    [Fact]
    public async Task ABatchAskingForFailedItems_AnnouncesEachItemAsItFails_SignedWithItsResultLine_BesideItsEnd()
    {
        var http = ApiHost.FreePort();
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}") };
        using var silo = Serve(http, Path.Combine(_directory.Path, "items.db"));
        await SiloProcess.WaitUntilAnsweringAsync(client);
        Assert.Equal(HttpStatusCode.OK, (await client.PutAsync("/v1/pools/p", Json("""{"maxRunning": 8}"""), Ct)).StatusCode);

        // Without a callbackUrl there is nowhere to announce them: 400 naming the option.
        var refused = await client.PostAsync("/v1/batches?pool=p&callbackFailedItems=true", Jsonl(2), Ct);
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Contains("callbackFailedItems", await refused.Content.ReadAsStringAsync(Ct), StringComparison.Ordinal);

        // The simulated model answers plain text: every answer fails a schema that wants an object, and each item fails at once.
        var schema = Uri.EscapeDataString("""{"type": "object"}""");
        var created = await client.PostAsync(
            $"/v1/batches?pool=p&schema={schema}&maxValidationAttempts=1&callbackFailedItems=true&callbackUrl={Uri.EscapeDataString(_receiver.Url)}", Jsonl(4), Ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var batchId = created.Headers.Location!.OriginalString.Split('/')[^1];

        var received = await Eventually.MatchesAsync(() => _receiver.Received, hooks => hooks.Count >= 5,
            hooks => $"{hooks.Count} deliveries came, not 5. Silo output:\n{silo.Output}");
        await Task.Delay(TimeSpan.FromSeconds(2), Ct);
        Assert.Equal(5, _receiver.Received.Count);
        Assert.All(received, hook =>
            Assert.Equal("sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(Secret), hook.Body)), hook.Headers["X-Nightshift-Signature"]));

        var failed = received.Where(hook => hook.Headers["X-Nightshift-Event"] == "item.failed").ToList();
        Assert.Equal([.. Enumerable.Range(0, 4).Select(i => $"{batchId}.0.{i}")], failed.Select(hook => hook.Headers["X-Nightshift-Delivery"]).Order());
        Assert.All(failed, hook =>
        {
            var line = JsonDocument.Parse(hook.Body).RootElement;
            Assert.StartsWith("hook-", line.GetProperty("custom_id").GetString(), StringComparison.Ordinal);
            Assert.Equal("validation_failed", line.GetProperty("error").GetProperty("code").GetString());
        });
        var end = Assert.Single(received, hook => hook.Headers["X-Nightshift-Event"] == "batch.completed");
        Assert.Equal($"{batchId}.0", end.Headers["X-Nightshift-Delivery"]);

        var listed = JsonDocument.Parse(await client.GetStringAsync($"/v1/batches/{batchId}/webhooks", Ct)).RootElement.EnumerateArray().ToList();
        Assert.Equal(5, listed.Count);
        Assert.All(listed, delivery => Assert.Equal("delivered", delivery.GetProperty("state").GetString()));
        Assert.Equal([0, 1, 2, 3], listed.Where(delivery => delivery.GetProperty("item").ValueKind == JsonValueKind.Number).Select(delivery => delivery.GetProperty("item").GetInt32()).Order());
    }

    [Fact]
    public async Task AFailureStillUndelivered_WhenARetryRunsItsItemAgain_IsGivenUp_NeverSentWithTheSuccessThatFollowed()
    {
        // json-model answers JSON, text-model plain text, which fails the batch's schema: every item fails on pool
        // "text" and succeeds when a retry moves the batch onto pool "json".
        using var mock = await MockModelProcess.StartAsync(["--port", "0", "--latency-ms", "1", "5", "--json-models", "json-model"], Ct);
        var http = ApiHost.FreePort();
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}") };
        using var silo = Serve(http, Path.Combine(_directory.Path, "items.db"));
        await SiloProcess.WaitUntilAnsweringAsync(client);
        foreach (var (pool, model) in new[] { ("text", "text-model"), ("json", "json-model") })
        {
            var config = $$"""{"provider": "openai", "endpoint": "{{new Uri(mock.BaseAddress, "v1")}}", "model": "{{model}}", "maxRunning": 4}""";
            Assert.Equal(HttpStatusCode.OK, (await client.PutAsync($"/v1/pools/{pool}", Json(config), Ct)).StatusCode);
        }

        // The receiver refuses the first five deliveries (the four failures and the batch's end), which are then due again in 1–2 s.
        foreach (var _ in Enumerable.Range(0, 5))
        {
            _receiver.Answers.Enqueue(503);
        }

        var schema = Uri.EscapeDataString("""{"type": "object"}""");
        var created = await client.PostAsync(
            $"/v1/batches?pool=text&schema={schema}&maxValidationAttempts=1&callbackFailedItems=true&callbackUrl={Uri.EscapeDataString(_receiver.Url + "?token=receiver-token-7")}",
            new StringContent(JsonAnswerLines.Lines("again", 4), Encoding.UTF8, "application/x-ndjson"), Ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var batchId = created.Headers.Location!.OriginalString.Split('/')[^1];
        await Eventually.MatchesAsync(() => _receiver.Received, hooks => hooks.Count >= 5, hooks => $"{hooks.Count} deliveries came, not 5. Silo output:\n{silo.Output}");

        var retried = await client.PostAsync($"/v1/batches/{batchId}/retry", Json("""{"pool": "json"}"""), Ct);
        Assert.Equal(HttpStatusCode.OK, retried.StatusCode);

        // Run 0's failures are given up (their items succeeded in run 1); both runs' ends are delivered.
        var listed = await Eventually.MatchesAsync(
            async () => JsonDocument.Parse(await client.GetStringAsync($"/v1/batches/{batchId}/webhooks", Ct)).RootElement.EnumerateArray().ToList(),
            deliveries => deliveries.Count == 6 && deliveries.All(delivery => delivery.GetProperty("state").GetString() != "pending"),
            deliveries => $"deliveries: {string.Join(", ", deliveries)}");
        var items = listed.Where(delivery => delivery.GetProperty("item").ValueKind == JsonValueKind.Number).ToList();
        Assert.Equal(4, items.Count);
        Assert.All(items, delivery =>
        {
            Assert.Equal("givenUp", delivery.GetProperty("state").GetString());
            Assert.Contains("no failure to announce", delivery.GetProperty("lastError").GetString(), StringComparison.Ordinal);
        });
        Assert.Equal(2, listed.Count(delivery => delivery.GetProperty("state").GetString() == "delivered"));
        Assert.All(_receiver.Received.Where(hook => hook.Headers["X-Nightshift-Event"] == "item.failed"),
            hook => Assert.Equal("validation_failed", JsonDocument.Parse(hook.Body).RootElement.GetProperty("error").GetProperty("code").GetString()));

        // The logs name where a delivery went, but not the token in its query.
        Assert.Contains($"delivered to {_receiver.Url} ", silo.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("receiver-token-7", silo.Output, StringComparison.Ordinal);
    }

    public void Dispose()
    {
        _receiver.Dispose();
        _directory.Dispose();
    }

    [Fact]
    public async Task AReceiverThatHangs_HoldsOnlyItsOwnDelivery_AnotherBatchIsDeliveredMeanwhile()
    {
        var http = ApiHost.FreePort();
        using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}") };
        using var silo = Serve(http, Path.Combine(_directory.Path, "hanging.db"), timeout: TimeSpan.FromSeconds(40));
        await SiloProcess.WaitUntilAnsweringAsync(client);
        Assert.Equal(HttpStatusCode.OK, (await client.PutAsync("/v1/pools/p", Json("""{"maxRunning": 8}"""), Ct)).StatusCode);

        // The first batch's end goes to a receiver that takes it and never answers: its attempt waits out the 40 s timeout.
        var hanging = await client.PostAsync($"/v1/batches?pool=p&callbackUrl={Uri.EscapeDataString(_receiver.HangingUrl)}", Jsonl(5), Ct);
        Assert.Equal(HttpStatusCode.Created, hanging.StatusCode);
        var held = await Eventually.MatchesAsync(() => _receiver.Received.FirstOrDefault(hook => hook.AnsweredStatus == 0), hook => hook is not null,
            _ => $"the hanging receiver got nothing. Silo output:\n{silo.Output}");

        // The second batch's end is delivered while the first's attempt still hangs, not after it.
        var created = await client.PostAsync($"/v1/batches?pool=p&callbackUrl={Uri.EscapeDataString(_receiver.Url)}", Jsonl(5), Ct);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var batchId = created.Headers.Location!.OriginalString.Split('/')[^1];
        var delivered = await Eventually.MatchesAsync(() => _receiver.Received.FirstOrDefault(hook => hook.Headers["X-Nightshift-Delivery"] == $"{batchId}.0"),
            hook => hook is not null, _ => $"the second batch's end was not delivered. Silo output:\n{silo.Output}");
        Assert.Equal(200, delivered!.AnsweredStatus);
        Assert.True(delivered.At - held!.At < TimeSpan.FromSeconds(20),
            $"the second batch's end came {(delivered.At - held.At).TotalSeconds:0.0} s after the hanging one was taken: it waited for that attempt");
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    private static StringContent Jsonl(int count) => new(Fixtures.Jsonl.Lines(count, "hook"), Encoding.UTF8, "application/x-ndjson");

    /// <summary>
    /// A <c>serve</c> process allowing webhooks to the receiver; retries 2 s apart at first, so none comes before the kill; an
    /// attempt unanswered after <paramref name="timeout"/> (1 s unless given) fails.
    /// </summary>
    private SiloProcess Serve(int http, string store, TimeSpan? timeout = null) => SiloProcess.Start(_directory.Path, new Dictionary<string, string>
    {
        ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{http}",
        ["Nightshift__Silo__SiloPort"] = $"{ApiHost.FreePort()}",
        ["Nightshift__Silo__GatewayPort"] = $"{ApiHost.FreePort()}",
        ["Nightshift__Webhooks__AllowedUrls__0"] = $"http://127.0.0.1:{_receiver.Port}/hooks/",
        ["Nightshift__Webhooks__Secret"] = Secret,
        ["Nightshift__Webhooks__BaseDelay"] = "00:00:02",
        ["Nightshift__Webhooks__Timeout"] = (timeout ?? TimeSpan.FromSeconds(1)).ToString(),
    }, "serve", "--store", store);
}
