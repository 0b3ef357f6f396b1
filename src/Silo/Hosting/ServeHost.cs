using Microsoft.Extensions.Options;
using Nightshift.Api.Dashboard;
using Orleans.Dashboard;
using Nightshift.Api;
using Nightshift.Api.Pools;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Storage;
using Orleans.Configuration;

namespace Nightshift.Silo.Hosting;

/// <summary>The long-running silo with the HTTP API (<c>serve</c>), and the API-only process (<c>api</c>).</summary>
internal static class ServeHost
{
    /// <summary>
    /// A silo that serves the API, on the store <paramref name="store"/> names (a file path or a PostgreSQL
    /// connection string; see <see cref="NightshiftSilo.Configure"/>); <paramref name="configure"/> adds configuration.
    /// </summary>
    public static WebApplication BuildSilo(string? store, Action<IConfigurationBuilder>? configure = null)
    {
        var (builder, endpoints) = CreateBuilder(configure);
        builder.Services.AddOptions<SiloOptions>().BindConfiguration(SiloOptions.Section).ValidateDataAnnotations().ValidateOnStart();
        NightshiftSilo.Configure(builder, endpoints, store, silo => silo.AddDashboard());
        return BuildApi(builder);
    }

    /// <summary>
    /// The API without a silo: an Orleans client of the cluster whose gateway is on this host, writing
    /// submissions to and streaming results from the same store.
    /// </summary>
    public static WebApplication BuildApiOnly(string? store, Action<IConfigurationBuilder>? configure = null)
    {
        var (builder, endpoints) = CreateBuilder(configure);
        var traced = Telemetry.ExportsOtlp(builder.Configuration);

        // Not the silo: leases in the store belong to the silo's process, never recovered from here.
        builder.Configuration.AddInMemoryCollection(NightshiftStoreExtensions.StoreSettings(store));
        builder.Configuration.AddInMemoryCollection([new($"{ItemStoreOptions.Section}:{nameof(ItemStoreOptions.RecoverLeasesAtStart)}", "false")]);
        var storeOptions = builder.Services.AddNightshiftStore(builder.Configuration);
        builder.UseOrleansClient(client =>
        {
            client.AddDashboard();
            if (traced)
            {
                client.AddActivityPropagation();
            }

            if (!storeOptions.UsesPostgres)
            {
                client.UseLocalhostClustering(endpoints.GatewayPort, NightshiftSilo.ServiceId, NightshiftSilo.ServiceId);
                return;
            }

            // The cluster's gateways, wherever they run, from the membership table.
            client.Configure<ClusterOptions>(cluster =>
            {
                cluster.ServiceId = NightshiftSilo.ServiceId;
                cluster.ClusterId = endpoints.ClusterId;
            });
            client.UseAdoNetClustering(clustering =>
            {
                clustering.Invariant = storeOptions.OrleansInvariant;
                clustering.ConnectionString = storeOptions.OrleansConnectionString;
            });
        });

        builder.Services.AddHostedService<StoreInitializer>();
        return BuildApi(builder);
    }

    /// <summary>Configures the pools declared under <c>Nightshift:Pools:{name}</c> (same fields as <c>PUT /v1/pools/{name}</c>).</summary>
    public static async Task DeclarePoolsAsync(WebApplication app)
    {
        var grains = app.Services.GetRequiredService<IGrainFactory>();
        foreach (var section in app.Configuration.GetSection("Nightshift:Pools").GetChildren())
        {
            var request = section.Get<PoolRequest>() ?? new PoolRequest();
            if (PoolsApi.Validate(section.Key, request, app.Services.GetRequiredService<IModelProviderCatalog>()) is { } problem)
            {
                throw new OptionsValidationException($"Nightshift:Pools:{section.Key}", typeof(PoolRequest), [$"Nightshift:Pools:{section.Key}: {problem}"]);
            }

            var pool = grains.GetGrain<IPoolGrain>(section.Key);
            var config = PoolsApi.ToConfig(request, await pool.GetConfig());
            await pool.Configure(config);
            await LimitsApi.DeclareAsync(section, pool, config);
        }
    }

    private static (WebApplicationBuilder Builder, SiloOptions Endpoints) CreateBuilder(Action<IConfigurationBuilder>? configure)
    {
        var builder = WebApplication.CreateBuilder(new WebApplicationOptions { ContentRootPath = AppContext.BaseDirectory });
        configure?.Invoke(builder.Configuration);
        return (builder, builder.Configuration.GetSection(SiloOptions.Section).Get<SiloOptions>() ?? new SiloOptions());
    }

    private static WebApplication BuildApi(WebApplicationBuilder builder)
    {
        // The pool API judges model bindings by the providers' own rules, in the API-only process too.
        builder.Services.AddNightshiftModels();
        builder.Services.AddNightshiftApi();
        builder.Services.AddNightshiftDashboard();
        builder.AddNightshiftTelemetry(scrapeEndpoint: true);
        var app = builder.Build();
        NightshiftApi.EnsureSafeToListen(app.Configuration, app.Services.GetRequiredService<IOptions<ApiOptions>>().Value);
        app.MapNightshiftApi();
        app.MapNightshiftDashboard();
        app.MapOrleansDashboard(routePrefix: DashboardApi.OrleansPath);
        app.MapPrometheusScrapingEndpoint(Telemetry.ScrapePath);
        return app;
    }

    private sealed class StoreInitializer(IItemStore store) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken) => store.InitializeAsync(cancellationToken);

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
