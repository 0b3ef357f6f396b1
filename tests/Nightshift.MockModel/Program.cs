using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;

namespace Nightshift.MockModel;

// A named class rather than top-level statements: the test project references this assembly, and a
// second public global Program beside the silo's would be ambiguous there.
internal static class Program
{
    private const string Usage = "usage: Nightshift.MockModel [--port N] [--latency-ms MIN [MAX]]";

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
        var port = 0;
        var latencyMin = 0;
        var latencyMax = 0;
        options = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--port":
                    if (!TryReadNumber(args, ++i, out port) || port > IPEndPoint.MaxPort)
                    {
                        error = "--port needs a port number from 0 to 65535 (0 picks a free port).";
                        return false;
                    }

                    break;
                case "--latency-ms":
                    if (!TryReadNumber(args, ++i, out latencyMin))
                    {
                        error = "--latency-ms needs a minimum latency in milliseconds (a whole number, 0 or more).";
                        return false;
                    }

                    latencyMax = latencyMin;
                    if (i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                    {
                        if (!TryReadNumber(args, ++i, out latencyMax) || latencyMax < latencyMin)
                        {
                            error = $"--latency-ms MAX must be a whole number of milliseconds, not less than MIN ({latencyMin}).";
                            return false;
                        }
                    }

                    break;
                default:
                    error = $"unknown argument '{args[i]}'.";
                    return false;
            }
        }

        options = new MockModelOptions
        {
            Port = port,
            LatencyMin = TimeSpan.FromMilliseconds(latencyMin),
            LatencyMax = TimeSpan.FromMilliseconds(latencyMax),
        };
        error = null;
        return true;
    }

    private static bool TryReadNumber(string[] args, int index, out int value)
    {
        value = 0;
        return index < args.Length && int.TryParse(args[index], NumberStyles.None, CultureInfo.InvariantCulture, out value);
    }
}
