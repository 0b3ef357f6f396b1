using System.Collections.Concurrent;

namespace Nightshift.Models;

/// <summary>
/// One pooled HTTP client per endpoint host, shared by every model of that host, so thousands of
/// concurrent calls reuse connections. No timeout of its own: each attempt's timeout is its
/// cancellation token.
/// </summary>
internal sealed class ModelHttpClients : IDisposable
{
    private readonly ConcurrentDictionary<string, HttpClient> _clients = new(StringComparer.OrdinalIgnoreCase);

    public HttpClient For(Uri endpoint) =>
        _clients.GetOrAdd(endpoint.GetLeftPart(UriPartial.Authority), static _ => new HttpClient(new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            MaxConnectionsPerServer = int.MaxValue,
            EnableMultipleHttp2Connections = true,
        })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        });

    public void Dispose()
    {
        foreach (var client in _clients.Values)
        {
            client.Dispose();
        }
    }
}
