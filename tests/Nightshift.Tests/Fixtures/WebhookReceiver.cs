using System.Collections.Concurrent;
using System.Net;

namespace Nightshift.Tests.Fixtures;

/// <summary>One POST the receiver took: its headers, its body, and the status it answered.</summary>
public sealed record ReceivedWebhook(DateTimeOffset At, IReadOnlyDictionary<string, string> Headers, byte[] Body, int AnsweredStatus);

/// <summary>
/// A webhook receiver on 127.0.0.1 (a free port): records every request it gets and answers each with the next
/// status of <see cref="Answers"/>, 200 once that is empty; a request to <see cref="HangingUrl"/> is recorded and
/// never answered. Requests are taken on their own, so one left hanging holds no other.
/// </summary>
public sealed class WebhookReceiver : IDisposable
{
    private readonly HttpListener _listener = new();
    private readonly ConcurrentQueue<ReceivedWebhook> _received = new();
    private readonly CancellationTokenSource _stopping = new();
    private readonly Task _serving;

    public WebhookReceiver()
    {
        Port = ApiHost.FreePort();
        _listener.Prefixes.Add($"http://127.0.0.1:{Port}/");
        _listener.Start();
        _serving = ServeAsync();
    }

    public int Port { get; }

    /// <summary>Where deliveries go: <c>/hooks/batches</c> on this receiver.</summary>
    public string Url => $"http://127.0.0.1:{Port}/hooks/batches";

    /// <summary>Where deliveries go that the receiver takes and never answers (recorded with status 0).</summary>
    public string HangingUrl => $"http://127.0.0.1:{Port}/hooks/hanging";

    /// <summary>The statuses to answer, in order, before answering 200.</summary>
    public ConcurrentQueue<int> Answers { get; } = new();

    public IReadOnlyList<ReceivedWebhook> Received => [.. _received];

    public void Dispose()
    {
        _stopping.Cancel();
        _listener.Stop();
        _listener.Close();
        try
        {
            _serving.Wait(TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
            // The listener's loop ends with the listener.
        }

        _stopping.Dispose();
    }

    private async Task ServeAsync()
    {
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception failure) when (failure is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }

            _ = AnswerAsync(context);
        }
    }

    private async Task AnswerAsync(HttpListenerContext context)
    {
        using var body = new MemoryStream();
        await context.Request.InputStream.CopyToAsync(body);
        var path = context.Request.Url?.AbsolutePath ?? "";
        var hangs = path == new Uri(HangingUrl).AbsolutePath;
        var status = hangs ? 0 : Answers.TryDequeue(out var next) ? next : 200;
        var headers = context.Request.Headers.AllKeys.OfType<string>().ToDictionary(key => key, key => context.Request.Headers[key] ?? "", StringComparer.OrdinalIgnoreCase);
        headers["method"] = context.Request.HttpMethod;
        headers["path"] = path;
        _received.Enqueue(new ReceivedWebhook(DateTimeOffset.UtcNow, headers, body.ToArray(), status));
        if (hangs)
        {
            await Task.Delay(Timeout.Infinite, _stopping.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            context.Response.Abort();
            return;
        }

        context.Response.StatusCode = status;
        context.Response.Close();
    }
}
