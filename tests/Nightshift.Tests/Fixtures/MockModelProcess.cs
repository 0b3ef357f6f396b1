using System.Net.Http.Json;
using System.Text.Json;
using Nightshift.MockModel;

namespace Nightshift.Tests.Fixtures;

/// <summary>
/// The mock model executable (<c>Nightshift.MockModel.dll</c>, copied beside the tests) run as a child
/// process, so its call counts outlive whatever process calls it. Killed on dispose.
/// </summary>
public sealed class MockModelProcess : ChildProcess
{
    private const string ListeningPrefix = "listening on ";

    private readonly TaskCompletionSource<Uri> _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    private MockModelProcess(IEnumerable<string> arguments)
        : base(StartInfo("Nightshift.MockModel.dll", arguments))
    {
    }

    /// <summary>Where the child listens, read from the line it prints on stdout.</summary>
    public Uri BaseAddress { get; private set; } = null!;

    private static readonly JsonSerializerOptions StatsJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    /// <summary>What the mock has counted so far (<c>GET /stats</c>).</summary>
    public async Task<MockModelStats> StatsAsync(CancellationToken cancellationToken)
    {
        using var client = new HttpClient { BaseAddress = BaseAddress };
        return (await client.GetFromJsonAsync<MockModelStats>("stats", StatsJson, cancellationToken))!;
    }

    /// <summary>Starts the child without waiting for it to listen (for its usage errors).</summary>
    public static MockModelProcess Start(IEnumerable<string> arguments) => new(arguments);

    /// <summary>Starts the child and waits for its <c>listening on</c> line; fails after 30 s.</summary>
    public static async Task<MockModelProcess> StartAsync(IEnumerable<string> arguments, CancellationToken cancellationToken)
    {
        var mock = new MockModelProcess(arguments);
        try
        {
            using var deadline = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            deadline.CancelAfter(TimeSpan.FromSeconds(30));
            if (await Task.WhenAny(mock._listening.Task, mock.ExitedAsync(deadline.Token)) != mock._listening.Task)
            {
                cancellationToken.ThrowIfCancellationRequested();
                throw new InvalidOperationException($"the mock model did not print its address within 30 s. Output:\n{mock.Output}");
            }

            mock.BaseAddress = await mock._listening.Task;
            return mock;
        }
        catch
        {
            mock.Dispose();
            throw;
        }
    }

    protected override void OnLine(string line)
    {
        if (line.StartsWith(ListeningPrefix, StringComparison.Ordinal))
        {
            _listening.TrySetResult(new Uri(line[ListeningPrefix.Length..]));
        }
    }
}
