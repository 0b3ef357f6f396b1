namespace Nightshift.Tests.Fixtures;

/// <summary>One test cluster shared by a test class; each test uses its own pools and batch ids.</summary>
public class ClusterFixture : IAsyncLifetime
{
    private NightshiftCluster? _cluster;

    public NightshiftCluster Cluster => _cluster ?? throw new InvalidOperationException("The cluster has not started.");

    protected virtual IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>();

    public async ValueTask InitializeAsync() => _cluster = await NightshiftCluster.StartAsync(Settings);

    public async ValueTask DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.DisposeAsync();
        }

        GC.SuppressFinalize(this);
    }
}
