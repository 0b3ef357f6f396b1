using System.Globalization;
using System.Net.Http.Headers;
using System.Text.Json;

namespace Nightshift.Tests.Fixtures;

/// <summary>
/// Real <c>serve</c> processes on one PostgreSQL database, forming one Orleans cluster on loopback:
/// each with its own silo, gateway and HTTP ports. Every process is killed on dispose.
/// </summary>
public sealed class SiloCluster : IDisposable
{
    private readonly List<Member> _members;
    private readonly string _connectionString;
    private readonly string _workingDirectory;
    private readonly IReadOnlyDictionary<string, string>? _environment;

    private SiloCluster(List<Member> members, string connectionString, string workingDirectory, IReadOnlyDictionary<string, string>? environment)
    {
        _members = members;
        _connectionString = connectionString;
        _workingDirectory = workingDirectory;
        _environment = environment;
    }

    /// <summary>Every member started, in order, killed ones included.</summary>
    public IReadOnlyList<Member> Members => _members;

    /// <summary>A member still running, to send API calls to.</summary>
    public Member Any => _members.First(member => !member.Killed);

    /// <summary>Starts one more member, as the others were started, and waits until it answers.</summary>
    public async Task<Member> AddAsync()
    {
        var member = await Member.StartReadyAsync(_connectionString, _workingDirectory, _environment);
        _members.Add(member);
        return member;
    }

    /// <summary>Starts <paramref name="silos"/> members, each with <paramref name="environment"/> added to its own.</summary>
    public static async Task<SiloCluster> StartAsync(string connectionString, int silos, string workingDirectory,
        IReadOnlyDictionary<string, string>? environment = null)
    {
        var members = Enumerable.Range(0, silos).Select(_ => Member.Start(connectionString, workingDirectory, environment)).ToList();
        var cluster = new SiloCluster(members, connectionString, workingDirectory, environment);
        try
        {
            for (var i = 0; i < members.Count; i++)
            {
                if (!await members[i].WaitUntilReadyAsync())
                {
                    members[i].Dispose();
                    members[i] = await Member.StartReadyAsync(connectionString, workingDirectory, environment);
                }
            }

            await cluster.WaitForActiveSilosAsync(silos);
            return cluster;
        }
        catch
        {
            cluster.Dispose();
            throw;
        }
    }

    /// <summary>Waits until the membership table lists <paramref name="count"/> active silos.</summary>
    public async Task WaitForActiveSilosAsync(int count)
    {
        await Eventually.MatchesAsync(async () =>
        {
            using var silos = JsonDocument.Parse(await Any.Client.GetStringAsync("/v1/silos", Ct));
            return silos.RootElement.EnumerateArray().Count(silo => silo.GetProperty("status").GetString() == "active");
        }, active => active == count, active => $"{active} active silos instead of {count}. Output:\n{Output}", period: TimeSpan.FromMilliseconds(200));
    }

    /// <summary>Everything every member printed, for failure messages.</summary>
    public string Output => string.Join("\n", _members.Select((member, i) => $"--- silo {i} (port {member.SiloPort}) ---\n{member.Process.Output}"));

    public void Dispose()
    {
        foreach (var member in _members)
        {
            member.Dispose();
        }
    }

    private static CancellationToken Ct => TestContext.Current.CancellationToken;

    public sealed class Member : IDisposable
    {
        private Member(SiloProcess process, int siloPort, HttpClient client)
        {
            Process = process;
            SiloPort = siloPort;
            Client = client;
        }

        public SiloProcess Process { get; }

        public int SiloPort { get; }

        public HttpClient Client { get; }

        public bool Killed { get; private set; }

        /// <summary>Whether Orleans' <paramref name="siloAddress"/> (<c>S127.0.0.1:port:generation</c>) is this member.</summary>
        public bool Is(string? siloAddress) =>
            siloAddress is not null && siloAddress.Contains($"127.0.0.1:{SiloPort.ToString(CultureInfo.InvariantCulture)}:", StringComparison.Ordinal);

        public static Member Start(string connectionString, string workingDirectory, IReadOnlyDictionary<string, string>? environment = null)
        {
            var http = ApiHost.FreePort();
            var siloPort = ApiHost.FreePort();
            var variables = new Dictionary<string, string>(environment ?? new Dictionary<string, string>())
            {
                ["ASPNETCORE_URLS"] = $"http://127.0.0.1:{http}",
                ["Nightshift__Silo__AdvertisedAddress"] = "127.0.0.1",
            };
            var process = SiloProcess.Start(workingDirectory, variables, "serve", "--store", connectionString, "--silo-port", $"{siloPort}", "--gateway-port", $"{ApiHost.FreePort()}");
            var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{http}") };
            if (variables.TryGetValue("Nightshift__Api__Keys__0", out var adminKey))
            {
                // With keys, the fixture's own calls (membership, readiness) go as an admin.
                client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", adminKey);
            }

            return new Member(process, siloPort, client);
        }

        /// <summary>
        /// Starts a member and waits until it is ready; once more, on fresh ports, if the first one ended
        /// at start-up (a port the fixture chose was taken in between by another process).
        /// </summary>
        public static async Task<Member> StartReadyAsync(string connectionString, string workingDirectory, IReadOnlyDictionary<string, string>? environment)
        {
            var member = Start(connectionString, workingDirectory, environment);
            if (await member.WaitUntilReadyAsync())
            {
                return member;
            }

            member.Dispose();
            member = Start(connectionString, workingDirectory, environment);
            if (!await member.WaitUntilReadyAsync())
            {
                Assert.Fail($"a silo ended twice at start-up. Output:\n{member.Process.Output}");
            }

            return member;
        }

        /// <summary>
        /// Polls <c>/health/ready</c> until it answers 2xx (<c>true</c>), or the process has ended (<c>false</c>);
        /// fails with the process's output after a minute.
        /// </summary>
        public async Task<bool> WaitUntilReadyAsync()
        {
            var ready = await Eventually.MatchesAsync(async () =>
            {
                try
                {
                    return (bool?)(await Client.GetAsync("/health/ready", Ct)).IsSuccessStatusCode;
                }
                catch (HttpRequestException)
                {
                    return Process.HasExited ? false : null;
                }
            }, answer => answer is not null && (answer.Value || Process.HasExited),
               _ => $"{Client.BaseAddress}health/ready did not answer. Output:\n{Process.Output}", period: TimeSpan.FromMilliseconds(100));
            return ready == true;
        }

        /// <summary>SIGSTOP: the process freezes as in a long GC pause or a frozen VM; its sockets stay open.</summary>
        public void Pause() => Process.Signal("STOP");

        /// <summary>SIGCONT after <see cref="Pause"/>.</summary>
        public void Continue() => Process.Signal("CONT");

        /// <summary>kill -9.</summary>
        public void Kill()
        {
            Killed = true;
            Process.Kill();
        }

        public void Dispose()
        {
            Process.Dispose();
            Client.Dispose();
        }
    }
}
