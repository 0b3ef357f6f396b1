using System.Globalization;

namespace Nightshift.Tests.Fixtures;

/// <summary>Which process owns which TCP connection, read from Linux's /proc (outside the processes themselves).</summary>
public static class TcpConnections
{
    /// <summary>The local ports of <paramref name="pid"/>'s open connections to <paramref name="remotePort"/>.</summary>
    public static HashSet<int> LocalPortsTo(int pid, int remotePort)
    {
        var sockets = new HashSet<string>(StringComparer.Ordinal);
        foreach (var descriptor in Directory.EnumerateFiles($"/proc/{pid}/fd"))
        {
            var target = new FileInfo(descriptor).LinkTarget;
            if (target is not null && target.StartsWith("socket:[", StringComparison.Ordinal))
            {
                sockets.Add(target["socket:[".Length..^1]);
            }
        }

        var ports = new HashSet<int>();
        foreach (var table in new[] { "/proc/net/tcp", "/proc/net/tcp6" }.Where(File.Exists))
        {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode …
            foreach (var line in File.ReadLines(table).Skip(1))
            {
                var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (fields.Length > 9 && sockets.Contains(fields[9]) && Port(fields[2]) == remotePort)
                {
                    ports.Add(Port(fields[1]));
                }
            }
        }

        return ports;
    }

    private static int Port(string address) => int.Parse(address[(address.LastIndexOf(':') + 1)..], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
}
