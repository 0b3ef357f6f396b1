using Microsoft.Playwright;

namespace Nightshift.Tests.Fixtures;

/// <summary>
/// A real headless Chromium (Debian's <c>chromium</c> package, which <c>./test.sh</c> installs when it is
/// missing) driven by Playwright; Playwright's own browser download is not used. <c>CHROMIUM_PATH</c>
/// names another executable.
/// </summary>
public sealed class Browser : IAsyncLifetime
{
    private IPlaywright? _playwright;

    public IBrowser Chromium { get; private set; } = null!;

    public static string ExecutablePath => Environment.GetEnvironmentVariable("CHROMIUM_PATH") is { Length: > 0 } path ? path : "/usr/bin/chromium";

    /// <summary>Where screenshots go: beside the test assembly, under <c>artifacts/</c>.</summary>
    public static string ArtifactPath(string name)
    {
        var directory = Path.Combine(AppContext.BaseDirectory, "artifacts");
        Directory.CreateDirectory(directory);
        return Path.Combine(directory, name);
    }

    public async ValueTask InitializeAsync()
    {
        if (!File.Exists(ExecutablePath))
        {
            throw new InvalidOperationException($"No Chromium at {ExecutablePath}: install Debian's 'chromium' package (./test.sh does) or set CHROMIUM_PATH.");
        }

        _playwright = await Playwright.CreateAsync();
        Chromium = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ExecutablePath,
            Headless = true,

            // Chromium's sandbox cannot start as root (the build machines run tests as root).
            Args = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        });
    }

    public async ValueTask DisposeAsync()
    {
        if (Chromium is not null)
        {
            await Chromium.DisposeAsync();
        }

        _playwright?.Dispose();
    }
}
