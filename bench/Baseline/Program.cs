using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Text.Json;

namespace Nightshift.Baseline;

/// <summary>
/// <c>Nightshift.Baseline --endpoint URL --model NAME --max-running N input.jsonl</c>: sends an OpenAI
/// Batch JSONL file through a <see cref="ClosedLoop"/>, the floor `run` is measured against, and prints
/// one JSON line of what it took.
/// </summary>
internal static class Program
{
    private const string Usage = "usage: Nightshift.Baseline --endpoint <base-url> --model <name> --max-running N <input.jsonl>";

    private static readonly JsonSerializerOptions Json = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    public static async Task<int> Main(string[] args)
    {
        if (!TryParse(args, out var options, out var error))
        {
            await Console.Error.WriteLineAsync($"{error}\n{Usage}");
            return 2;
        }

        using var http = new HttpClient();
        ClosedLoopResult result;
        try
        {
            // Ctrl+C may end the process where it stands: nothing is kept that could be left half-written.
            using var loop = new ClosedLoop(http, options);
            result = await loop.RunAsync(CancellationToken.None);
        }
        catch (InvalidDataException invalid)
        {
            await Console.Error.WriteLineAsync(invalid.Message);
            return 2;
        }

        // From the process's own start, so the runtime's start-up counts as it does in `run`'s wall time.
        using var self = Process.GetCurrentProcess();
        var seconds = (DateTime.Now - self.StartTime).TotalSeconds;
        var summary = new Summary(result.Items, result.Succeeded, seconds, result.FirstRequestToLastResponse.TotalSeconds, result.Succeeded / seconds);
        await Console.Out.WriteLineAsync(JsonSerializer.Serialize(summary, Json));
        return result.Succeeded == result.Items ? 0 : 1;
    }

    private static bool TryParse(string[] args, [NotNullWhen(true)] out ClosedLoopOptions? options, [NotNullWhen(false)] out string? error)
    {
        Uri? endpoint = null;
        string? model = null;
        string? input = null;
        var maxRunning = 0;
        options = null;
        error = null;
        for (var i = 0; i < args.Length && error is null; i++)
        {
            var value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--endpoint":
                    i++;
                    if (!Uri.TryCreate(value, UriKind.Absolute, out endpoint) || endpoint.Scheme is not ("http" or "https"))
                    {
                        error = "--endpoint needs an absolute http(s) URL including its version segment, e.g. http://127.0.0.1:5000/v1.";
                    }

                    break;
                case "--model":
                    i++;
                    model = value;
                    break;
                case "--max-running":
                    i++;
                    if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out maxRunning) || maxRunning < 1)
                    {
                        error = "--max-running needs a whole number of calls, at least 1.";
                    }

                    break;
                case var path when !path.StartsWith("--", StringComparison.Ordinal) && input is null:
                    input = path;
                    break;
                default:
                    error = $"unknown argument '{args[i]}'.";
                    break;
            }
        }

        if (error is null && endpoint is not null && !string.IsNullOrEmpty(model) && maxRunning > 0 && input is not null && File.Exists(input))
        {
            options = new ClosedLoopOptions(endpoint, model, maxRunning, input);
            return true;
        }

        error ??= endpoint is null ? "--endpoint is required."
            : string.IsNullOrEmpty(model) ? "--model is required."
            : maxRunning == 0 ? "--max-running is required."
            : input is null ? "the input JSONL file is required."
            : $"'{input}' does not exist.";
        return false;
    }

    /// <summary>The one JSON line printed at the end; <see cref="Seconds"/> runs from the process's start to its end.</summary>
    private sealed record Summary(int Items, int Succeeded, double Seconds, double FirstRequestToLastResponseSeconds, double ItemsPerS);
}
