namespace Nightshift.MockModel;

/// <summary>A completion request as the <see cref="MockModelOptions.Respond"/> hook sees it.</summary>
/// <param name="CustomId">The <c>X-Nightshift-Custom-Id</c> header, or <c>(none)</c>.</param>
/// <param name="Path">The request path, e.g. <c>/v1/chat/completions</c>.</param>
/// <param name="Body">The raw request body.</param>
/// <param name="Attempt">1-based: how many requests with this custom_id the server has received since start or the last reset, this one included.</param>
public sealed record MockRequest(string CustomId, string Path, string Body, int Attempt);
