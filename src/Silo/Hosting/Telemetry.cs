using Nightshift.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;

namespace Nightshift.Silo.Hosting;

/// <summary>
/// OpenTelemetry for every Nightshift process: the <c>Nightshift</c> activity source and meter plus
/// Orleans' own, exported over OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set (traces, metrics and
/// logs, configured by the standard <c>OTEL_*</c> variables), and metrics for a Prometheus scrape
/// endpoint on a web host.
/// </summary>
internal static class Telemetry
{
    /// <summary>The service name resources carry unless <c>OTEL_SERVICE_NAME</c> says otherwise.</summary>
    public const string ServiceName = "nightshift";

    /// <summary>Where a web host serves metrics in Prometheus' text format.</summary>
    public const string ScrapePath = "/metrics";

    private const string OrleansMeter = "Microsoft.Orleans";

    private static readonly string[] OrleansSources = ["Microsoft.Orleans.Runtime", "Microsoft.Orleans.Application"];

    /// <summary>Whether OTLP export was asked for; also decides whether grain calls carry trace context.</summary>
    public static bool ExportsOtlp(IConfiguration configuration) => !string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);

    public static void AddNightshiftTelemetry(this IHostApplicationBuilder builder, bool scrapeEndpoint)
    {
        var otlp = ExportsOtlp(builder.Configuration);
        if (!otlp && !scrapeEndpoint)
        {
            return;
        }

        var telemetry = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(builder.Configuration["OTEL_SERVICE_NAME"] ?? ServiceName))
            .WithMetrics(metrics =>
            {
                metrics.AddMeter(NightshiftTelemetry.Name, OrleansMeter);
                if (scrapeEndpoint)
                {
                    metrics.AddPrometheusExporter();
                }
            });

        // Spans are only built when something will read them: without OTLP there is no tracer provider.
        if (otlp)
        {
            telemetry.WithTracing(tracing => tracing.AddSource(NightshiftTelemetry.Name).AddSource(OrleansSources))
                .WithLogging()
                .UseOtlpExporter();
        }
    }
}
