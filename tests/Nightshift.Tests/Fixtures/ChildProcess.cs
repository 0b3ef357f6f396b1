using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace Nightshift.Tests.Fixtures;

/// <summary>
/// A <c>dotnet &lt;assembly&gt;</c> child process (an executable copied beside the tests), its stdout and
/// stderr captured line by line. Killed with SIGKILL on dispose if it is still running.
/// </summary>
public abstract class ChildProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<(bool Error, string Line)> _lines = [];
    private readonly Lock _linesLock = new();

    protected ChildProcess(ProcessStartInfo start)
    {
        _process = Process.Start(start) ?? throw new InvalidOperationException($"{start.FileName} did not start");
        _process.OutputDataReceived += (_, e) => Append(error: false, e.Data);
        _process.ErrorDataReceived += (_, e) => Append(error: true, e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>The process id.</summary>
    public int Id => _process.Id;

    /// <summary>Whether the process has ended (killed, or ended by itself).</summary>
    public bool HasExited => _process.HasExited;

    /// <summary>Everything the process wrote to stdout and stderr so far, in the order it was read.</summary>
    public string Output => Text(_ => true);

    /// <summary>What the process wrote to stdout so far.</summary>
    public string StandardOutput => Text(line => !line.Error);

    /// <summary>What the process wrote to stderr so far.</summary>
    public string StandardError => Text(line => line.Error);

    /// <summary>
    /// The start of <c>dotnet &lt;assembly&gt;</c> with <paramref name="arguments"/> and <paramref name="environment"/>,
    /// every stream redirected (stdin too, so a child never sees the test runner's terminal).
    /// </summary>
    public static ProcessStartInfo StartInfo(string assembly, IEnumerable<string> arguments,
        string? workingDirectory = null, IReadOnlyDictionary<string, string>? environment = null)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory ?? Environment.CurrentDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, assembly));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[key] = value;
        }

        return start;
    }

    /// <summary>Waits for the process to exit and returns its exit code; fails the test after <paramref name="timeout"/>.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan timeout)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(TestContext.Current.CancellationToken);
        deadline.CancelAfter(timeout);
        try
        {
            await _process.WaitForExitAsync(deadline.Token);
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested)
        {
            throw new TimeoutException($"{GetType().Name} {Id} did not exit within {timeout}. Output:\n{Output}");
        }

        // The parameterless wait also drains the redirected streams, so Output is complete.
        _process.WaitForExit();
        return _process.ExitCode;
    }

    /// <summary>Completes when the process has exited; cancelled with <paramref name="cancellationToken"/>.</summary>
    public Task ExitedAsync(CancellationToken cancellationToken) => _process.WaitForExitAsync(cancellationToken);

    /// <summary>kill -9: the process gets no chance to clean up.</summary>
    public void Kill()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    /// <summary>SIGTERM, as a service manager or Ctrl+C in a terminal would stop it.</summary>
    public void Terminate() => Signal("TERM");

    /// <summary>Sends the process a signal by name (<c>TERM</c>, <c>STOP</c>, <c>CONT</c>).</summary>
    public void Signal(string name)
    {
        using var kill = Process.Start("kill", [$"-{name}", _process.Id.ToString(CultureInfo.InvariantCulture)]);
        kill.WaitForExit();
    }

    public void Dispose()
    {
        Dispose(disposing: true);
        GC.SuppressFinalize(this);
    }

    /// <summary>Called once per line the process writes, on a thread-pool thread, after it joined <see cref="Output"/>.</summary>
    protected virtual void OnLine(string line)
    {
    }

    protected virtual void Dispose(bool disposing)
    {
        if (!disposing)
        {
            return;
        }

        if (!_process.HasExited)
        {
            Kill();
        }

        _process.Dispose();
    }

    private void Append(bool error, string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_linesLock)
        {
            _lines.Add((error, line));
        }

        OnLine(line);
    }

    private string Text(Func<(bool Error, string Line), bool> include)
    {
        var text = new StringBuilder();
        lock (_linesLock)
        {
            foreach (var line in _lines.Where(include))
            {
                text.AppendLine(line.Line);
            }
        }

        return text.ToString();
    }
}
