using System.Globalization;
using System.Text.Json;
using Nightshift.Batches;

namespace Nightshift.Api.Batches;

/// <summary>
/// Reads a batch's options from query parameters (uploads) or the JSON <c>options</c> object, by the
/// same names: <c>maxAttempts</c>, <c>maxRateLimitedAttempts</c>, <c>attemptTimeoutSeconds</c>,
/// <c>baseDelaySeconds</c>, <c>maxDelaySeconds</c>, <c>priority</c>, <c>maxValidationAttempts</c> and
/// <c>schema</c> (a JSON Schema: URL-encoded JSON in a query, an object in JSON) and <c>temperatures</c>
/// (<c>0,0.5,1</c> in a query, an array of numbers in JSON) and <c>callbackUrl</c> (an absolute http(s) URL;
/// whether the configuration allows it is the caller's to check) with <c>callbackFailedItems</c> (true or false) and <c>escalate</c> (pool names: <c>big,bigger</c>
/// in a query, an array in JSON; whether they exist is the submitter's to check). A bad value names its field.
/// </summary>
internal static class BatchOptionsReader
{
    private const string SchemaName = "schema";
    private const string TemperaturesName = "temperatures";
    private const string CallbackUrlName = "callbackUrl";
    private const string EscalateName = "escalate";
    private const string CallbackFailedItemsName = "callbackFailedItems";

    /// <summary>Most pools a batch may escalate through.</summary>
    private const int MaxEscalations = 8;

    private static readonly string[] Numbers =
        ["maxAttempts", "maxRateLimitedAttempts", "attemptTimeoutSeconds", "baseDelaySeconds", "maxDelaySeconds", "priority", "maxValidationAttempts", "maxRunning"];

    private static readonly string[] Names = [.. Numbers, SchemaName, TemperaturesName, CallbackUrlName, CallbackFailedItemsName, EscalateName];

    /// <summary>
    /// The problem with <paramref name="given"/> names that are neither options nor among <paramref name="alsoKnown"/>
    /// (a typo like <c>maxAttemps</c> must not be dropped silently), naming them and what is known; <c>null</c> when none.
    /// </summary>
    public static string? Unknown(IEnumerable<string> given, params string[] alsoKnown)
    {
        var known = alsoKnown.Concat(Names).ToList();
        var unknown = given.Where(name => !known.Contains(name, StringComparer.Ordinal)).Select(name => $"'{name}'").ToList();
        return unknown.Count == 0 ? null : $"unknown {(unknown.Count == 1 ? "option" : "options")} {string.Join(", ", unknown)}; known: {string.Join(", ", known)}";
    }

    public static bool TryRead(Func<string, string?> value, out BatchOptions options, out string? problem)
    {
        var read = new BatchOptions();
        options = read;
        problem = null;
        if (value(SchemaName) is { } schema)
        {
            if (!IsJsonObject(schema))
            {
                problem = $"{SchemaName}: a JSON Schema, as a JSON object";
                return false;
            }

            read = read with { Schema = schema };
        }

        if (value(TemperaturesName) is { } listed)
        {
            var temperatures = listed.Trim('[', ']').Split(',', StringSplitOptions.TrimEntries)
                .Select(text => double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var t) && t is >= 0 and <= 2 ? t : double.NaN).ToArray();
            if (temperatures.Length is 0 or > 20 || temperatures.Any(double.IsNaN))
            {
                problem = $"{TemperaturesName}: 1 to 20 numbers from 0 to 2, e.g. 0,0.5,1";
                return false;
            }

            read = read with { Temperatures = temperatures };
        }

        if (value(CallbackUrlName) is { } callback)
        {
            if (callback.Length > 2048 || !Uri.TryCreate(callback, UriKind.Absolute, out var url) || url.Scheme is not ("http" or "https") || url.UserInfo.Length > 0)
            {
                problem = $"{CallbackUrlName}: an absolute http or https URL without credentials, at most 2048 characters";
                return false;
            }

            read = read with { CallbackUrl = url.AbsoluteUri };
        }

        if (value(CallbackFailedItemsName) is { } announce)
        {
            if (!bool.TryParse(announce, out var failedItems) || (failedItems && read.CallbackUrl is null))
            {
                problem = $"{CallbackFailedItemsName}: true or false, and true only with {CallbackUrlName}";
                return false;
            }

            read = read with { CallbackFailedItems = failedItems };
        }

        if (value(EscalateName) is { } escalate)
        {
            if (Pools(escalate) is not { Length: > 0 and <= MaxEscalations } pools || pools.Any(string.IsNullOrWhiteSpace) || pools.Distinct().Count() < pools.Length)
            {
                problem = $"{EscalateName}: 1 to {MaxEscalations} distinct pool names, e.g. big,bigger (an array in JSON)";
                return false;
            }

            // Each escalation is asked once an answer fails validation; by default every pool of the list gets its turn.
            read = read with { Escalate = pools, MaxValidationAttempts = pools.Length + 1 };
        }

        foreach (var name in Numbers)
        {
            if (value(name) is not { } text)
            {
                continue;
            }

            if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var number) || double.IsNaN(number) || double.IsInfinity(number))
            {
                problem = $"{name}: '{text}' is not a number";
                return false;
            }

            problem = name switch
            {
                "maxAttempts" or "maxRateLimitedAttempts" or "priority" or "maxValidationAttempts" or "maxRunning" when number != Math.Floor(number) => $"{name}: a whole number",
                "maxRunning" when number is < 1 or > 100_000 => $"{name}: from 1 to 100000",
                "maxValidationAttempts" when number is < 1 or > 20 => $"{name}: from 1 to 20",
                "maxAttempts" when number is < 1 or > 100 => $"{name}: from 1 to 100",
                "maxRateLimitedAttempts" when number is < 1 or > 1000 => $"{name}: from 1 to 1000",
                "priority" when number is < 1 or > 10 => $"{name}: from 1 to 10",
                "attemptTimeoutSeconds" when number is <= 0 or > 3600 => $"{name}: more than 0 and at most 3600 seconds",
                "baseDelaySeconds" when number is < 0 or > 3600 => $"{name}: from 0 to 3600 seconds",
                "maxDelaySeconds" when number is < 0 or > 86_400 => $"{name}: from 0 to 86400 seconds",
                _ => null,
            };
            if (problem is not null)
            {
                return false;
            }

            read = name switch
            {
                "maxAttempts" => read with { MaxAttempts = (int)number },
                "maxRateLimitedAttempts" => read with { MaxRateLimitedAttempts = (int)number },
                "priority" => read with { Priority = (int)number },
                "maxValidationAttempts" => read with { MaxValidationAttempts = (int)number },
                "maxRunning" => read with { MaxRunning = (int)number },
                "attemptTimeoutSeconds" => read with { AttemptTimeout = TimeSpan.FromSeconds(number) },
                "baseDelaySeconds" => read with { BaseDelay = TimeSpan.FromSeconds(number) },
                _ => read with { MaxDelay = TimeSpan.FromSeconds(number) },
            };
        }

        options = read;
        return true;
    }

    /// <summary>The pool names of <c>escalate</c>: a JSON array of strings, or names separated by commas; <c>null</c> when neither.</summary>
    private static string[]? Pools(string listed)
    {
        if (!listed.StartsWith('['))
        {
            return listed.Split(',', StringSplitOptions.TrimEntries);
        }

        try
        {
            return JsonSerializer.Deserialize<string[]>(listed);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>The JSON <c>options</c> object as values by name; a value that is not a number (or the schema's object) is passed on as text to be refused.</summary>
    public static Func<string, string?> FromJson(JsonElement options) => name =>
        options.TryGetProperty(name, out var value) ? value.ValueKind is JsonValueKind.Number or JsonValueKind.Object or JsonValueKind.Array ? value.GetRawText() : value.ToString() : null;

    private static bool IsJsonObject(string text)
    {
        try
        {
            using var document = JsonDocument.Parse(text);
            return document.RootElement.ValueKind == JsonValueKind.Object;
        }
        catch (JsonException)
        {
            return false;
        }
    }
}
