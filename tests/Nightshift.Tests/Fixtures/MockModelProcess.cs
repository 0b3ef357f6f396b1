using System.Diagnostics;
using System.Text;

namespace Nightshift.Tests.Fixtures;

/// <summary>
/// The mock model executable (<c>Nightshift.MockModel.dll</c>, copied beside the tests) run as a child
/// process, so its call counts outlive whatever process calls it. Killed on dispose.
/// </summary>
public sealed class MockModelProcess : IDisposable
{
    private const string ListeningPrefix = "listening on ";

    private readonly Process _process;
    private readonly StringBuilder _errors = new();
    private readonly Lock _errorsLock = new();

    private MockModelProcess(Process process)
    {
        _process = process;
        _process.ErrorDataReceived += (_, e) => AppendError(e.Data);
        _process.BeginErrorReadLine();
    }

    /// <summary>Where the child listens, read from the line it prints on stdout.</summary>
    public Uri BaseAddress { get; private set; } = null!;

    /// <summary>Everything the process wrote to stderr so far.</summary>
    public string Errors
    {
        get
        {
            lock (_errorsLock)
            {
                return _errors.ToString();
            }
        }
    }

    /// <summary>The start of <c>dotnet Nightshift.MockModel.dll</c> with <paramref name="arguments"/>, its output redirected.</summary>
    public static ProcessStartInfo StartInfo(IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Nightshift.MockModel.dll"));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        return start;
    }

    /// <summary>Starts the child and waits for its <c>listening on</c> line; fails after 30 s.</summary>
    public static async Task<MockModelProcess> StartAsync(IEnumerable<string> arguments, CancellationToken cancellationToken)
    {
        var mock = new MockModelProcess(Process.Start(StartInfo(arguments)) ?? throw new InvalidOperationException("dotnet did not start"));
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(TimeSpan.FromSeconds(30));
            var line = await mock._process.StandardOutput.ReadLineAsync(deadline.Token);
            if (line is null || !line.StartsWith(ListeningPrefix, StringComparison.Ordinal))
            {
                throw new InvalidOperationException($"the mock model printed '{line}' instead of its address. Errors:\n{mock.Errors}");
            }

            mock.BaseAddress = new Uri(line[ListeningPrefix.Length..]);
            return mock;
        }
        catch
        {
            mock.Dispose();
            throw;
        }
    }

    /// <summary>kill -9: the process gets no chance to clean up.</summary>
    public void Kill()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            Kill();
        }

        _process.Dispose();
    }

    private void AppendError(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_errorsLock)
        {
            _errors.AppendLine(line);
        }
    }
}
