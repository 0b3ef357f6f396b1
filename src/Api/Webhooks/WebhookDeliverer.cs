using System.Globalization;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Nightshift.Api.Batches;
using Nightshift.Batches;
using Nightshift.Results;
using Nightshift.Models;
using Nightshift.Storage;

namespace Nightshift.Api.Webhooks;

/// <summary>
/// Delivers the store's webhook outbox: every <see cref="Period"/> it claims the deliveries due (in a cluster,
/// whichever process claims one delivers it), as many as keep <see cref="MaxInFlight"/> under way, POSTs each one's
/// body, signed, and records the outcome. Each delivery runs on its own: a slow receiver holds its own deliveries,
/// never the others' (they are claimed and sent at the next look). A
/// failed attempt is tried again with backoff, up to <see cref="WebhookOptions.MaxAttempts"/>. The outbox row
/// outlives any process, so a delivery interrupted by a crash is made by the next one to look (at least once:
/// a crash after the receiver answered and before the outcome was recorded delivers it again, under the same
/// <see cref="DeliveryHeader"/>).
/// </summary>
internal sealed partial class WebhookDeliverer(
    IWebhookOutbox outbox,
    IItemCatalogue catalogue,
    IGrainFactory grains,
    IOptions<WebhookOptions> options,
    IOptions<PriceTable> prices,
    IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> json,
    TimeProvider time,
    ILogger<WebhookDeliverer> logger) : BackgroundService
{
    public const string SignatureHeader = "X-Nightshift-Signature";
    public const string EventHeader = "X-Nightshift-Event";
    public const string DeliveryHeader = "X-Nightshift-Delivery";

    public static readonly TimeSpan Period = TimeSpan.FromSeconds(1);

    /// <summary>Deliveries under way at once: each look claims as many as are missing.</summary>
    private const int MaxInFlight = 16;

    // Redirects are not followed: an allowed URL must not lead a delivery to one that is not.
    private readonly HttpClient _http = new(new SocketsHttpHandler { AllowAutoRedirect = false, PooledConnectionLifetime = TimeSpan.FromMinutes(5) })
    {
        Timeout = Timeout.InfiniteTimeSpan,
    };

    /// <summary>The signature header's value for <paramref name="body"/>: <c>sha256=</c> and the HMAC-SHA256 in lowercase hex.</summary>
    public static string Sign(string secret, byte[] body) =>
        "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(Encoding.UTF8.GetBytes(secret), body));

    public override void Dispose()
    {
        _http.Dispose();
        base.Dispose();
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (options.Value.AllowedUrls.Length == 0)
        {
            // No batch can have asked for a webhook.
            return;
        }

        using var timer = new PeriodicTimer(Period, time);
        var underWay = new Dictionary<(string BatchId, int Run, int Item), Task>(MaxInFlight);
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                foreach (var (key, _) in underWay.Where(delivery => delivery.Value.IsCompleted).ToList())
                {
                    underWay.Remove(key);
                }

                // An attempt that outlived its claim is claimed again here: it goes on, and is not sent a second time beside itself.
                foreach (var delivery in await ClaimDueAsync(MaxInFlight - underWay.Count, stoppingToken))
                {
                    var key = (delivery.BatchId, delivery.Run, delivery.Item);
                    if (!underWay.ContainsKey(key))
                    {
                        underWay[key] = DeliverAsync(delivery, options.Value, stoppingToken);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping: what is claimed and not delivered is due again once its claim runs out.
        }

        // Stopping cuts each attempt under way short; what it meets then is no failure to report.
        await Task.WhenAll(underWay.Values).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
    }

    /// <summary>Claims up to <paramref name="room"/> deliveries due.</summary>
    private async Task<IReadOnlyList<WebhookDelivery>> ClaimDueAsync(int room, CancellationToken stoppingToken)
    {
        if (room == 0)
        {
            return [];
        }

        try
        {
            // Claimed for longer than an attempt can take, so no other process sends it meanwhile.
            var now = time.GetUtcNow();
            return await outbox.ClaimWebhooksAsync(now, now + options.Value.Timeout * 3, room, stoppingToken);
        }
        catch (Exception failure) when (failure is not OperationCanceledException)
        {
            LogClaimFailed(logger, failure);
            return [];
        }
    }

    private async Task DeliverAsync(WebhookDelivery delivery, WebhookOptions settings, CancellationToken stoppingToken)
    {
        try
        {
            var (state, error) = settings.Refusal(delivery.Url) is { } refused
                ? (WebhookState.GivenUp, $"no longer allowed: {refused}")
                : await BodyAsync(delivery, stoppingToken) is not { } body
                    ? (WebhookState.GivenUp, "the item has no failure to announce any more: its batch was retried since, and the item runs again or succeeded")
                    : await AttemptAsync(delivery, body, settings, stoppingToken);
            var next = time.GetUtcNow();
            switch (state)
            {
                case WebhookState.Delivered:
                    LogDelivered(logger, DeliveryId(delivery), WithoutQuery(delivery.Url), delivery.Attempts);
                    break;
                case WebhookState.GivenUp:
                    LogGivenUp(logger, DeliveryId(delivery), delivery.Attempts, error!);
                    break;
                default:
                    // Exponential, with jitter in its upper half so that deliveries failed together spread out.
                    var step = settings.BaseDelay * Math.Pow(2, Math.Min(delivery.Attempts - 1, 20));
                    var delay = TimeSpan.FromTicks(Math.Min(step.Ticks, settings.MaxDelay.Ticks)) * (0.5 + (Random.Shared.NextDouble() / 2));
                    LogRetrying(logger, DeliveryId(delivery), delivery.Attempts, error!, delay);
                    next += delay;
                    break;
            }

            await outbox.RecordWebhookAsync(delivery.BatchId, delivery.Run, delivery.Item, state, next, error, CancellationToken.None);
        }
        catch (Exception failure) when (!stoppingToken.IsCancellationRequested)
        {
            // The batch could not be read or the outcome not recorded: the claim runs out, and the delivery is due again.
            LogAttemptFailed(logger, failure, DeliveryId(delivery));
        }
    }

    /// <summary>One attempt, and where the delivery stands after it: delivered, pending again (with the error) or given up.</summary>
    private async Task<(WebhookState State, string? Error)> AttemptAsync(WebhookDelivery delivery, byte[] body, WebhookOptions settings, CancellationToken stoppingToken)
    {
        string? error;
        try
        {
            error = await PostAsync(delivery, body, settings, stoppingToken);
        }
        catch (Exception failure) when (failure is HttpRequestException or TaskCanceledException && !stoppingToken.IsCancellationRequested)
        {
            error = failure is TaskCanceledException ? $"no answer within {settings.Timeout.TotalSeconds:0.#} s" : failure.Message;
        }

        return error is null ? (WebhookState.Delivered, null)
            : delivery.Attempts >= settings.MaxAttempts ? (WebhookState.GivenUp, error)
            : (WebhookState.Pending, error);
    }

    /// <summary>One attempt; <c>null</c> when the receiver answered 2xx, else what went wrong.</summary>
    private async Task<string?> PostAsync(WebhookDelivery delivery, byte[] body, WebhookOptions settings, CancellationToken stoppingToken)
    {

        using var request = new HttpRequestMessage(HttpMethod.Post, delivery.Url) { Content = new ByteArrayContent(body) };
        request.Content.Headers.ContentType = new MediaTypeHeaderValue("application/json") { CharSet = "utf-8" };
        request.Headers.Add(EventHeader, delivery.Event);
        request.Headers.Add(DeliveryHeader, DeliveryId(delivery));
        request.Headers.Add(SignatureHeader, Sign(settings.Secret!, body));
        request.Headers.UserAgent.Add(new ProductInfoHeaderValue("Nightshift-Webhooks", "1"));

        using var attempt = CancellationTokenSource.CreateLinkedTokenSource(stoppingToken);
        attempt.CancelAfter(settings.Timeout);
        using var response = await _http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead, attempt.Token);
        return response.IsSuccessStatusCode ? null : $"the receiver answered {(int)response.StatusCode} {response.ReasonPhrase}";
    }

    /// <summary>What a delivery sends; <c>null</c> for an item's failure that is no longer its result (the batch was retried since).</summary>
    private async Task<byte[]?> BodyAsync(WebhookDelivery delivery, CancellationToken stoppingToken) =>
        delivery.Item == WebhookDelivery.BatchEnd ? await BatchBodyAsync(delivery, stoppingToken) : await ItemBodyAsync(delivery, stoppingToken);

    /// <summary>The body of a batch's end: the batch's view, as <c>GET /v1/batches/{id}</c> answers it.</summary>
    private async Task<byte[]> BatchBodyAsync(WebhookDelivery delivery, CancellationToken stoppingToken)
    {
        var status = await grains.GetGrain<IBatchGrain>(delivery.BatchId).GetStatus();
        var view = await BatchView.WithMaybeBilledAsync(status, grains, catalogue, prices.Value, time.GetUtcNow(), stoppingToken);
        return JsonSerializer.SerializeToUtf8Bytes(view, json.Value.SerializerOptions);
    }

    /// <summary>
    /// The body of an item's failure: its line of the batch's results, while that is a failure. An item the batch's
    /// retry ran again has none until it fails again (then it is that failure), and one that succeeded none at all:
    /// an <c>item.failed</c> is never sent with a success in it.
    /// </summary>
    private async Task<byte[]?> ItemBodyAsync(WebhookDelivery delivery, CancellationToken stoppingToken)
    {
        if (await catalogue.GetResultAsync(delivery.BatchId, delivery.Item, stoppingToken) is not { State: ItemState.Failed } result)
        {
            return null;
        }

        using var line = new MemoryStream();
        await BatchOutputWriter.WriteAsync(new[] { result }.ToAsyncEnumerable(), delivery.BatchId, line, stoppingToken);
        return line.ToArray().AsSpan().TrimEnd("\n"u8).ToArray();
    }

    /// <summary>A callback URL as the logs show it: without its query, where a receiver's token often is.</summary>
    private static string WithoutQuery(string url) => Uri.TryCreate(url, UriKind.Absolute, out var uri) ? uri.GetLeftPart(UriPartial.Path) : url;

    /// <summary>What names a delivery in its header and the logs: <c>{batch}.{run}</c>, and <c>.{item}</c> for an item's failure.</summary>
    private static string DeliveryId(WebhookDelivery delivery) => delivery.Item == WebhookDelivery.BatchEnd
        ? string.Create(CultureInfo.InvariantCulture, $"{delivery.BatchId}.{delivery.Run}")
        : string.Create(CultureInfo.InvariantCulture, $"{delivery.BatchId}.{delivery.Run}.{delivery.Item}");

    [LoggerMessage(EventId = 6001, Level = LogLevel.Information, Message = "Webhook {Delivery} delivered to {Url} (attempt {Attempt})")]
    private static partial void LogDelivered(ILogger logger, string delivery, string url, int attempt);

    [LoggerMessage(EventId = 6002, Level = LogLevel.Warning, Message = "Webhook {Delivery} failed (attempt {Attempt}): {Error}; tried again in {Delay}")]
    private static partial void LogRetrying(ILogger logger, string delivery, int attempt, string error, TimeSpan delay);

    [LoggerMessage(EventId = 6003, Level = LogLevel.Error, Message = "Webhook {Delivery} given up after {Attempts} attempts: {Error}")]
    private static partial void LogGivenUp(ILogger logger, string delivery, int attempts, string error);

    [LoggerMessage(EventId = 6005, Level = LogLevel.Warning, Message = "Webhook {Delivery}: its attempt could not be made or recorded; due again once its claim runs out")]
    private static partial void LogAttemptFailed(ILogger logger, Exception failure, string delivery);

    [LoggerMessage(EventId = 6004, Level = LogLevel.Warning, Message = "Could not read the webhook outbox; looking again in a second")]
    private static partial void LogClaimFailed(ILogger logger, Exception failure);
}
