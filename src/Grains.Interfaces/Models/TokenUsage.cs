namespace Nightshift.Models;

/// <summary>Tokens as the provider reports them; <see cref="CachedTokens"/> is the part of <see cref="InputTokens"/> served from its prompt cache.</summary>
/// <param name="InputTokens">Prompt tokens.</param>
/// <param name="OutputTokens">Completion tokens.</param>
/// <param name="CachedTokens">The part of <paramref name="InputTokens"/> served from the prompt cache.</param>
public readonly record struct TokenUsage(long InputTokens, long OutputTokens, long CachedTokens = 0);
