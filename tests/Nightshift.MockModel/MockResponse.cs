namespace Nightshift.MockModel;

/// <summary>An answer the <see cref="MockModelOptions.Respond"/> hook sends instead of the completion.</summary>
/// <param name="StatusCode">HTTP status code, e.g. 429.</param>
/// <param name="Body">Response body, sent as <c>application/json</c> unless <see cref="Headers"/> says otherwise.</param>
public sealed record MockResponse(int StatusCode, string Body)
{
    /// <summary>Response headers, e.g. <c>Retry-After</c>. Default: none.</summary>
    public IReadOnlyDictionary<string, string> Headers { get; init; } = System.Collections.ObjectModel.ReadOnlyDictionary<string, string>.Empty;

    /// <summary>Waited on top of the server's latency before answering (cut short if the client aborts). Default: 0.</summary>
    public TimeSpan Delay { get; init; }

    /// <summary>
    /// When set, the connection is reset after this many bytes of <see cref="Body"/> (announced whole in
    /// <c>Content-Length</c>): 0 resets it before any answer, more sends a truncated body. Default: none.
    /// </summary>
    public int? ResetAfterBytes { get; init; }
}
