namespace Nightshift.MockModel;

// The OpenAI chat.completion shape, written with snake_case names (see MockModelApi.Json).
internal sealed record ChatCompletion(string Id, string Object, long Created, string Model, IReadOnlyList<ChatChoice> Choices, ChatUsage Usage);

internal sealed record ChatChoice(int Index, ChatMessage Message, string FinishReason);

internal sealed record ChatMessage(string Role, string Content);

internal sealed record ChatUsage(int PromptTokens, int CompletionTokens, int TotalTokens);

internal sealed record ApiError(ApiErrorDetail Error);

internal sealed record ApiErrorDetail(string Message, string Type, string? Code = null);
