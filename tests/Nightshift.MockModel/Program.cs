using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;

namespace Nightshift.MockModel;

// A named class rather than top-level statements: the test project references this assembly, and a
// second public global Program beside the silo's would be ambiguous there.
internal static class Program
{
    private const string Usage = """
        usage: Nightshift.MockModel [--port N] [--latency-ms MIN [MAX]]
                                    [--rps N] [--tps N] [--burst-seconds S] [--completion-tokens N]
                                    [--fault-429 P] [--fault-500 P] [--fault-503 P] [--fault-529 P] [--fault-truncate P] [--fault-hang P]
                                    [--hang-ms N] [--retry-after-s N] [--seed N] [--slow PREFIX MS] [--json-models M,...]
        """;

    public static async Task<int> Main(string[] args)
    {
        if (args is ["-h" or "--help"])
        {
            Console.WriteLine(Usage);
            return 0;
        }

        if (!TryParse(args, out var options, out var error))
        {
            await Console.Error.WriteLineAsync($"{error}\n{Usage}");
            return 2;
        }

        var stopped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void Stop(PosixSignalContext signal)
        {
            // Shut down in order instead of letting the runtime end the process mid-request.
            signal.Cancel = true;
            stopped.TrySetResult();
        }

        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);

        await using var server = await MockModelServer.StartAsync(options, CancellationToken.None);

        // The one line on stdout: a parent process reads the port from it.
        await Console.Out.WriteLineAsync($"listening on {server.BaseAddress}");
        await Console.Out.FlushAsync();

        await stopped.Task;
        return 0;
    }

    private static bool TryParse(string[] args, [NotNullWhen(true)] out MockModelOptions? options, [NotNullWhen(false)] out string? error)
    {
        var defaults = new MockModelOptions();
        var port = 0;
        var latencyMin = 0;
        var latencyMax = 0;
        double? requestsPerSecond = null;
        double? tokensPerSecond = null;
        var burstSeconds = defaults.BurstSeconds;
        var completionTokens = defaults.CompletionTokens;
        var fault429 = 0.0;
        var fault500 = 0.0;
        var fault503 = 0.0;
        var fault529 = 0.0;
        var faultTruncate = 0.0;
        var faultHang = 0.0;
        var hangMs = defaults.HangMs;
        var retryAfterSeconds = defaults.RetryAfterSeconds;
        int? seed = null;
        string? slowPrefix = null;
        HashSet<string> jsonModels = new(StringComparer.Ordinal);
        var slowMs = 0;
        options = null;
        error = null;
        for (var i = 0; i < args.Length && error is null; i++)
        {
            var name = args[i];
            switch (name)
            {
                case "--port":
                    if (!TryReadNumber(args, ++i, out port) || port > IPEndPoint.MaxPort)
                    {
                        error = "--port needs a port number from 0 to 65535 (0 picks a free port).";
                    }

                    break;
                case "--latency-ms":
                    if (!TryReadNumber(args, ++i, out latencyMin))
                    {
                        error = "--latency-ms needs a minimum latency in milliseconds (a whole number, 0 or more).";
                        break;
                    }

                    latencyMax = latencyMin;
                    if (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal)
                        && (!TryReadNumber(args, ++i, out latencyMax) || latencyMax < latencyMin))
                    {
                        error = $"--latency-ms MAX must be a whole number of milliseconds, not less than MIN ({latencyMin}).";
                    }

                    break;
                case "--rps":
                    error = ReadAboveZero(args, ++i, name, out var requests);
                    requestsPerSecond = requests;
                    break;
                case "--tps":
                    error = ReadAboveZero(args, ++i, name, out var tokens);
                    tokensPerSecond = tokens;
                    break;
                case "--burst-seconds":
                    error = ReadAboveZero(args, ++i, name, out burstSeconds);
                    break;
                case "--completion-tokens":
                    error = ReadWhole(args, ++i, "--completion-tokens needs a whole number of tokens, 0 or more.", out completionTokens);
                    break;
                case "--fault-429":
                    error = ReadProbability(args, ++i, name, out fault429);
                    break;
                case "--fault-500":
                    error = ReadProbability(args, ++i, name, out fault500);
                    break;
                case "--fault-503":
                    error = ReadProbability(args, ++i, name, out fault503);
                    break;
                case "--fault-529":
                    error = ReadProbability(args, ++i, name, out fault529);
                    break;
                case "--fault-truncate":
                    error = ReadProbability(args, ++i, name, out faultTruncate);
                    break;
                case "--fault-hang":
                    error = ReadProbability(args, ++i, name, out faultHang);
                    break;
                case "--hang-ms":
                    error = ReadWhole(args, ++i, "--hang-ms needs a whole number of milliseconds, 0 or more.", out hangMs);
                    break;
                case "--retry-after-s":
                    error = ReadWhole(args, ++i, "--retry-after-s needs a whole number of seconds, 0 or more.", out retryAfterSeconds);
                    break;
                case "--seed":
                    error = ReadWhole(args, ++i, "--seed needs a whole number, 0 or more.", out var seedValue);
                    seed = seedValue;
                    break;
                case "--json-models":
                    if (++i >= args.Length || args[i].Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) is not { Length: > 0 } models)
                    {
                        error = "--json-models needs a comma-separated list of models.";
                        break;
                    }

                    jsonModels.UnionWith(models);
                    break;
                case "--slow":
                    slowPrefix = ++i < args.Length && args[i].Length > 0 ? args[i] : null;
                    error = slowPrefix is null
                        ? "--slow needs a custom_id prefix and a latency in milliseconds."
                        : ReadWhole(args, ++i, "--slow needs a latency in milliseconds after its prefix (a whole number, 0 or more).", out slowMs);
                    break;
                default:
                    error = $"unknown argument '{name}'.";
                    break;
            }
        }

        if (error is not null)
        {
            return false;
        }

        var parsed = new MockModelOptions
        {
            Port = port,
            LatencyMin = TimeSpan.FromMilliseconds(latencyMin),
            LatencyMax = TimeSpan.FromMilliseconds(latencyMax),
            RequestsPerSecond = requestsPerSecond,
            TokensPerSecond = tokensPerSecond,
            BurstSeconds = burstSeconds,
            CompletionTokens = completionTokens,
            Fault429 = fault429,
            Fault500 = fault500,
            Fault503 = fault503,
            Fault529 = fault529,
            FaultTruncate = faultTruncate,
            FaultHang = faultHang,
            HangMs = hangMs,
            RetryAfterSeconds = retryAfterSeconds,
            Seed = seed,
            SlowPrefix = slowPrefix,
            JsonModels = jsonModels,
            SlowLatency = TimeSpan.FromMilliseconds(slowMs),
        };
        try
        {
            // The rules that bind several options together (faults summing to at most 1, a request
            // bucket that holds one request) are the options' own, stated once.
            parsed.Validate();
        }
        catch (ArgumentOutOfRangeException invalid)
        {
            error = invalid.Message;
            return false;
        }

        options = parsed;
        return true;
    }

    private static bool TryReadNumber(string[] args, int index, out int value)
    {
        value = 0;
        return index < args.Length && int.TryParse(args[index], NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }

    /// <summary>Null when <c>args[index]</c> is a whole number, 0 or more; else <paramref name="problem"/>.</summary>
    private static string? ReadWhole(string[] args, int index, string problem, out int value) =>
        TryReadNumber(args, index, out value) ? null : problem;

    /// <summary>Null when <c>args[index]</c> is a number above 0; else what <paramref name="name"/> needs.</summary>
    private static string? ReadAboveZero(string[] args, int index, string name, out double value) =>
        TryReadDecimal(args, index, out value) && value > 0 ? null : $"{name} needs a number above 0.";

    /// <summary>Null when <c>args[index]</c> is a probability; else what <paramref name="name"/> needs.</summary>
    private static string? ReadProbability(string[] args, int index, string name, out double value) =>
        TryReadDecimal(args, index, out value) && value <= 1 ? null : $"{name} needs a probability from 0 to 1.";

    private static bool TryReadDecimal(string[] args, int index, out double value)
    {
        value = 0;
        return index < args.Length
            && double.TryParse(args[index], NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out value)
            && double.IsFinite(value);
    }
}
