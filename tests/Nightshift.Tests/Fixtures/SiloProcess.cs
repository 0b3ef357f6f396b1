namespace Nightshift.Tests.Fixtures;

/// <summary>
/// The real silo executable (<c>Nightshift.Silo.dll</c>, copied beside the tests) run as a child
/// process, with its output captured. Killed with SIGKILL on dispose if it is still running.
/// </summary>
public sealed class SiloProcess : ChildProcess
{
    private SiloProcess(string workingDirectory, IReadOnlyDictionary<string, string> environment, string[] arguments)
        : base(StartInfo("Nightshift.Silo.dll", arguments, workingDirectory, environment))
    {
    }

    public static SiloProcess Start(string workingDirectory, IReadOnlyDictionary<string, string> environment, params string[] arguments) =>
        new(workingDirectory, environment, arguments);

    /// <summary>Polls <paramref name="path"/> until it answers 2xx; fails after a minute.</summary>
    public static Task WaitUntilAnsweringAsync(HttpClient client, string path = "/health/ready") =>
        Eventually.HoldsAsync(async () =>
        {
            try
            {
                return (await client.GetAsync(path, TestContext.Current.CancellationToken)).IsSuccessStatusCode;
            }
            catch (HttpRequestException)
            {
                return false;
            }
        }, () => $"{client.BaseAddress}{path} did not answer", period: TimeSpan.FromMilliseconds(100));
}
