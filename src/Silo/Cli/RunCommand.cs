using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using Nightshift.Batches;
using Nightshift.Models;
using Nightshift.Pools;
using Nightshift.Results;
using Nightshift.Silo.Hosting;
using Nightshift.Storage;
using Nightshift.Submission;
using Spectre.Console;

namespace Nightshift.Silo.Cli;

/// <summary>
/// <c>run &lt;input.jsonl&gt;</c>: runs one JSONL file to completion in an embedded silo and writes the
/// results. The batch id is derived from the file's content, so running the same file again resumes
/// the batch from the store instead of starting over.
/// </summary>
internal static class RunCommand
{
    public const string PoolName = "default";

    /// <summary>Exit code when every item succeeded.</summary>
    public const int Succeeded = 0;

    /// <summary>Exit code when the batch finished with failed or cancelled items.</summary>
    public const int ItemsFailed = 1;

    /// <summary>Exit code when the input was rejected; nothing was written.</summary>
    public const int InputRejected = 2;

    /// <summary>
    /// Exit code when the provider refused the pool itself (401: the key; 404: the model or deployment)
    /// and the pool paused; fix it and run the same command again to resume.
    /// </summary>
    public const int ModelRefused = 3;

    /// <summary>Exit code when interrupted (Ctrl+C, SIGTERM); run the same command again to resume.</summary>
    public const int Interrupted = 130;

    /// <summary>How long an interrupted run waits for its calls in flight before it stops.</summary>
    private static readonly TimeSpan StopGracePeriod = TimeSpan.FromSeconds(10);

    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(100);

    private static readonly Argument<FileInfo> Input = new("input") { Description = "The OpenAI Batch JSONL file to run." };
    private static readonly Option<FileInfo?> Out = new("--out") { Description = "Where to write the results JSONL (default: <input>.results.jsonl beside the input)." };
    private static readonly Option<string?> Store = new("--store")
    {
        Description = "Path of the SQLite store file (default: ./data/nightshift.db), or a PostgreSQL connection string (a database of its own: the run's silo forms a cluster there).",
    };
    private static readonly Option<int> MaxRunning = new("--max-running") { Description = "Calls that may run at once.", DefaultValueFactory = _ => 16 };
    private static readonly Option<int> MaxAttempts = new("--max-attempts") { Description = "Attempts per item that may end in a model error (429s have their own budget).", DefaultValueFactory = _ => 5 };
    private static readonly Option<FileInfo> Schema = new("--schema") { Description = "A JSON Schema file every answer's content must satisfy (as with a line's response_format json_schema); an answer that does not is asked again." };
    private static readonly Option<int> MaxValidationAttempts = new("--max-validation-attempts")
    {
        Description = "Answers per item that may fail validation before it fails as validation_failed.",
        DefaultValueFactory = _ => new BatchOptions().MaxValidationAttempts,
    };
    // The forms that came before --provider: --endpoint alone is an OpenAI-compatible endpoint, --azure-endpoint
    // Azure OpenAI, neither the simulated model.
    private const string OpenAiCompatible = "openai";
    private const string AzureOpenAi = "azure";
    private const string Simulated = "simulated";

    // The providers' names and rules, known before a host is built, so bad arguments stop the run before it starts
    // (with an empty configuration: judging a binding reads none).
    private static readonly IModelProviderCatalog Providers = new ServiceCollection()
        .AddSingleton<IConfiguration>(new ConfigurationBuilder().Build())
        .AddNightshiftModels()
        .BuildServiceProvider()
        .GetRequiredService<IModelProviderCatalog>();

    private static readonly Option<string?> Provider = new("--provider")
    {
        Description = $"The model provider: {string.Join(", ", Providers.Names)} (openai is any OpenAI-compatible endpoint). Default: openai with --endpoint, azure with --azure-endpoint, else simulated.",
    };
    private static readonly Option<string?> Endpoint = new("--endpoint")
    {
        Description = "Base URL of the provider's endpoint: for openai including its version segment (e.g. http://localhost:11434/v1), for anthropic without it (default: https://api.anthropic.com), for azure the resource's URL. Default: the simulated model.",
    };
    private static readonly Option<string?> Model = new("--model") { Description = "The model to ask at --endpoint (or the provider's default endpoint); it replaces each line's body.model." };
    private static readonly Option<string?> AzureEndpoint = new("--azure-endpoint") { Description = "An Azure OpenAI resource's URL (https://<resource>.openai.azure.com). Default: the simulated model." };
    private static readonly Option<string?> Deployment = new("--deployment") { Description = "The Azure OpenAI deployment to call at --azure-endpoint." };
    private static readonly Option<string?> ApiKeyEnv = new("--api-key-env") { Description = "The environment variable holding the endpoint's API key (the key itself is never passed on the command line; anthropic sends it as x-api-key); with --azure-endpoint and no key, Entra ID signs in." };
    private static readonly Option<int?> Rpm = new("--rpm") { Description = "Requests the model may be sent per minute, paced smoothly (default: learned from the provider's x-ratelimit-* headers, if it sends them)." };
    private static readonly Option<long?> Tpm = new("--tpm") { Description = "Tokens (prompt + completion) the model may be sent per minute, each call estimated before it starts (default: learned from the provider's headers, if it sends them)." };
    private static readonly Option<bool> Verbose = new("--verbose") { Description = "Show Nightshift's and Orleans' informational logs." };

    /// <summary>Refuses a whole-number option below 1 (an option left out, <c>null</c>, passes).</summary>
    private static void AtLeastOne<T>(Option<T> option, string error)
    {
        option.Validators.Add(result =>
        {
            if (result.GetValue(option) is { } value && Convert.ToInt64(value, CultureInfo.InvariantCulture) < 1)
            {
                result.AddError(error);
            }
        });
    }

    public static Command Create()
    {
        Input.AcceptExistingOnly();
        AtLeastOne(MaxRunning, "--max-running must be at least 1.");
        AtLeastOne(MaxAttempts, "--max-attempts must be at least 1.");
        AtLeastOne(MaxValidationAttempts, "--max-validation-attempts must be at least 1.");
        Schema.AcceptExistingOnly();
        AtLeastOne(Rpm, "--rpm must be at least 1 (requests per minute).");
        AtLeastOne(Tpm, "--tpm must be at least 1 (tokens per minute).");
        Endpoint.Validators.Add(result =>
        {
            if (!Uri.TryCreate(result.GetValue(Endpoint), UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            {
                result.AddError("--endpoint must be an absolute http(s) URL, e.g. http://localhost:11434/v1.");
            }
        });
        AzureEndpoint.Validators.Add(result =>
        {
            if (!Uri.TryCreate(result.GetValue(AzureEndpoint), UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https"))
            {
                result.AddError("--azure-endpoint must be an absolute http(s) URL, e.g. https://my-resource.openai.azure.com.");
            }
        });
        ApiKeyEnv.Validators.Add(result =>
        {
            if (Environment.GetEnvironmentVariable(result.GetValue(ApiKeyEnv)!) is null)
            {
                result.AddError($"--api-key-env names '{result.GetValue(ApiKeyEnv)}', which is not set in the environment.");
            }
        });
        Provider.CompletionSources.Add([.. Providers.Names]);
        var command = new Command("run", "Run a JSONL file to completion in an embedded silo and write the results; run again to resume.")
        {
            Input, Out, Store, MaxRunning, MaxAttempts, Schema, MaxValidationAttempts, Provider, Endpoint, Model, AzureEndpoint, Deployment, ApiKeyEnv, Rpm, Tpm, Verbose,
        };
        command.Validators.Add(result =>
        {
            var named = result.GetValue(Provider);
            var endpoint = result.GetValue(Endpoint) is not null;
            var azure = result.GetValue(AzureEndpoint) is not null;
            var provider = ProviderOf(named, endpoint, azure);
            if (endpoint && azure)
            {
                result.AddError("--endpoint and --azure-endpoint exclude each other: one model per run.");
            }

            if (azure && provider != AzureOpenAi)
            {
                result.AddError($"--azure-endpoint is the '{AzureOpenAi}' provider's; for '{provider}', give --endpoint.");
            }

            if (endpoint && provider != AzureOpenAi && result.GetValue(Model) is null)
            {
                result.AddError("--endpoint needs --model: the model to ask there.");
            }

            if (provider == AzureOpenAi && (endpoint || azure) && result.GetValue(Deployment) is null)
            {
                result.AddError("--azure-endpoint needs --deployment: the deployment to call there.");
            }

            if (named is null && !endpoint && result.GetValue(Model) is not null)
            {
                result.AddError("--model goes with --endpoint (with --azure-endpoint, name the --deployment).");
            }

            if (provider != AzureOpenAi && result.GetValue(Deployment) is not null)
            {
                result.AddError("--deployment goes with --azure-endpoint.");
            }

            if (named is null && !endpoint && !azure && result.GetValue(ApiKeyEnv) is not null)
            {
                result.AddError("--api-key-env goes with --endpoint or --azure-endpoint.");
            }

            if (result.Errors.Any())
            {
                return;
            }

            var binding = ModelBinding(provider, result.GetValue(Endpoint) ?? result.GetValue(AzureEndpoint), result.GetValue(Model) ?? result.GetValue(Deployment), result.GetValue(ApiKeyEnv));
            if (Providers.Validate(binding) is { } problem)
            {
                // The catalog names the binding's fields; here they are options.
                result.AddError(problem.StartsWith("provider: ", StringComparison.Ordinal) ? $"--{problem}." : $"--provider {provider}: {problem}.");
            }
        });
        command.SetAction(RunAsync);
        return command;
    }

    private static async Task<int> RunAsync(ParseResult parseResult, CancellationToken cancellationToken)
    {
        var total = Stopwatch.StartNew();
        var input = parseResult.GetRequiredValue(Input);
        var output = parseResult.GetValue(Out) ?? new FileInfo(Path.ChangeExtension(input.FullName, null) + ".results.jsonl");

        // Hashing a large input takes a while; the silo starts meanwhile.
        var hashing = Task.Run(() => BatchIdAsync(input, cancellationToken), cancellationToken);
        var options = new BatchOptions
        {
            MaxAttempts = parseResult.GetValue(MaxAttempts),
            MaxValidationAttempts = parseResult.GetValue(MaxValidationAttempts),
            Schema = parseResult.GetValue(Schema) is { } schema ? await File.ReadAllTextAsync(schema.FullName, cancellationToken) : null,
        };

        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings
        {
            ContentRootPath = AppContext.BaseDirectory,

            // One run reads its configuration once: no file watcher for changes to appsettings.json.
            Configuration = new ConfigurationManager { ["hostBuilder:reloadConfigOnChange"] = "false" },
        });
        builder.Logging.ClearProviders();
        builder.Logging.AddConsole(console => console.LogToStandardErrorThreshold = LogLevel.Trace);
        var level = parseResult.GetValue(Verbose) ? nameof(LogLevel.Information) : nameof(LogLevel.Warning);
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Logging:LogLevel:Default"] = level,
            ["Logging:LogLevel:Orleans"] = level,
            ["Logging:LogLevel:Microsoft"] = nameof(LogLevel.Warning),
            ["Logging:LogLevel:Microsoft.Hosting.Lifetime"] = nameof(LogLevel.Warning),

            // Orleans' watchdog warns of a stall lasting since before the process started on its first
            // check; in a one-shot run that line is only noise.
            ["Logging:LogLevel:Orleans.Runtime.Watchdog"] = nameof(LogLevel.Error),
            ["Logging:LogLevel:Polly"] = nameof(LogLevel.Warning),
        });

        var store = parseResult.GetValue(Store);
        NightshiftSilo.Configure(builder, NightshiftSilo.PrivateEndpoints(), store);
        builder.AddNightshiftTelemetry(scrapeEndpoint: false);
        var poolConfig = new PoolConfig
        {
            MaxRunning = parseResult.GetValue(MaxRunning),
            Rpm = parseResult.GetValue(Rpm),
            Tpm = parseResult.GetValue(Tpm),
            Model = ModelBinding(
                ProviderOf(parseResult.GetValue(Provider), parseResult.GetValue(Endpoint) is not null, parseResult.GetValue(AzureEndpoint) is not null),
                parseResult.GetValue(Endpoint) ?? parseResult.GetValue(AzureEndpoint),
                parseResult.GetValue(Model) ?? parseResult.GetValue(Deployment),
                parseResult.GetValue(ApiKeyEnv)),
        };
        using var host = builder.Build();

        // The store needs no silo: the file is read and staged while the silo starts (on another core, when there is one).
        using var stopStaging = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var staging = Task.Run(() => StageAsync(host.Services, hashing, input, options, poolConfig.Model, stopStaging.Token), stopStaging.Token);
        try
        {
            await host.StartAsync(cancellationToken);
        }
        catch
        {
            // The start's failure is reported at once, not after the rest of the file is read.
            await stopStaging.CancelAsync();
            await DropAsync(staging);
            throw;
        }

        var batchId = await hashing;
        try
        {
            var services = host.Services;
            var grains = services.GetRequiredService<IGrainFactory>();
            var pool = grains.GetGrain<IPoolGrain>(PoolName);
            var batch = grains.GetGrain<IBatchGrain>(batchId);
            BatchStatus status;
            var accepted = true;

            // What was staged is kept only until it is accepted (its temporary copy of the file goes with it).
            await using (var staged = await staging)
            {
                await pool.Configure(poolConfig);
                status = await batch.GetStatus();
                if (status.State == BatchState.NotFound)
                {
                    accepted = await StartAsync(services, batchId, staged, input, options, cancellationToken);
                }
            }

            if (!accepted)
            {
                return InputRejected;
            }

            if (status.State != BatchState.NotFound)
            {
                await Console.Error.WriteLineAsync($"Resuming batch {batchId} from {NightshiftSilo.StoreName(builder.Configuration)}: " +
                    $"{status.Done} of {status.Total} items already done.");
                if (await services.GetRequiredService<IItemCatalogue>().GetBatchAsync(batchId, cancellationToken) is { Options: { } kept }
                    && Ignored(kept, options) is { Count: > 0 } ignored)
                {
                    await Console.Error.WriteLineAsync($"The batch keeps the options it was started with; ignored now: {string.Join(", ", ignored)}. " +
                        "Run with another --store to start the file anew with them.");
                }

                if (status.State == BatchState.Paused)
                {
                    await batch.Resume();
                }
            }

            var doneBefore = status.Done;
            var dispatching = Stopwatch.StartNew();
            var (final, pausedReason) = await RunProgress.FollowAsync(batch, pool, cancellationToken);
            if (pausedReason is not null)
            {
                await Console.Error.WriteLineAsync($"Stopped: pool '{PoolName}' paused: {pausedReason}");
                await DrainAsync(batch);
                await Console.Error.WriteLineAsync($"Fix the key or the model/deployment, then run the same command again to resume batch {batchId}.");
                return ModelRefused;
            }

            var rate = (final.Done - doneBefore) / dispatching.Elapsed.TotalSeconds;
            var (succeeded, failed) = await WriteResultsAsync(services.GetRequiredService<IItemStore>(), batchId, output, cancellationToken);
            await Console.Error.WriteLineAsync($"Batch {batchId} {final.State.ToString().ToLowerInvariant()}: {succeeded} succeeded, {failed} failed or cancelled. Results: {output.FullName}");
            using var self = Process.GetCurrentProcess();
            await Console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"Took {total.Elapsed.TotalSeconds:0.0} s in all; {rate:0} items/s after submission; peak memory {self.PeakWorkingSet64 / (1024 * 1024)} MB."));
            return failed == 0 && succeeded == final.Total ? Succeeded : ItemsFailed;
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync($"Interrupted: letting the calls in flight finish (at most {StopGracePeriod.TotalSeconds:0} s)...");
            await DrainAsync(host.Services.GetRequiredService<IGrainFactory>().GetGrain<IBatchGrain>(batchId));
            await Console.Error.WriteLineAsync($"Interrupted. Run the same command again to resume batch {batchId}.");
            return Interrupted;
        }
        finally
        {
            await host.StopAsync(CancellationToken.None);
        }
    }

    private static string ProviderOf(string? named, bool endpoint, bool azure) =>
        named ?? (azure ? AzureOpenAi : endpoint ? OpenAiCompatible : Simulated);

    /// <summary>The pool's model; an empty model name means none was given (the provider says whether it needs one).</summary>
    private static ModelBinding ModelBinding(string provider, string? endpoint, string? model, string? apiKeyEnv) =>
        provider == Simulated && endpoint is null && model is null
            ? new ModelBinding()
            : new ModelBinding { Provider = provider, Endpoint = endpoint, Model = model ?? "", ApiKeyEnvironmentVariable = apiKeyEnv };

    /// <summary>
    /// Pauses the batch so nothing more is dispatched, and waits (bounded) for the calls in flight to
    /// record their results; the next run resumes it. What is still in flight after the grace period
    /// is recovered as interrupted by that next run.
    /// </summary>
    private static async Task DrainAsync(IBatchGrain batch)
    {
        using var grace = new CancellationTokenSource(StopGracePeriod);
        try
        {
            if ((await batch.GetStatus()).State == BatchState.Running)
            {
                await batch.Pause();
            }

            while ((await batch.GetStatus()).Running > 0)
            {
                await Task.Delay(PollInterval, grace.Token);
            }
        }
        catch (OperationCanceledException) when (grace.IsCancellationRequested)
        {
            await Console.Error.WriteLineAsync("Calls still in flight after the grace period are retried by the next run.");
        }
    }

    /// <summary>The options given now that differ from those a batch started with, as the command line names them.</summary>
    private static List<string> Ignored(BatchOptions kept, BatchOptions given)
    {
        var ignored = new List<string>();
        if (given.MaxAttempts != kept.MaxAttempts)
        {
            ignored.Add($"--max-attempts {given.MaxAttempts} (the batch's: {kept.MaxAttempts})");
        }

        if (given.MaxValidationAttempts != kept.MaxValidationAttempts)
        {
            ignored.Add($"--max-validation-attempts {given.MaxValidationAttempts} (the batch's: {kept.MaxValidationAttempts})");
        }

        if (given.Schema != kept.Schema)
        {
            ignored.Add(given.Schema is null ? "no --schema (the batch has one)" : kept.Schema is null ? "--schema (the batch has none)" : "--schema (the batch's differs)");
        }

        return ignored;
    }

    /// <summary>
    /// Reads and stages the file's items in the store; a batch the store holds already (a run before this one committed
    /// it) is answered as existing, and nothing of the file is read.
    /// </summary>
    private static async Task<StagedSubmission> StageAsync(IServiceProvider services, Task<string> hashing, FileInfo input, BatchOptions options, ModelBinding model,
        CancellationToken cancellationToken)
    {
        var batchId = await hashing;
        await services.GetRequiredService<IItemStore>().InitializeAsync(cancellationToken);
        await using var stream = input.OpenRead();
        return await services.GetRequiredService<BatchSubmitter>().StageAsync(batchId, PoolName, model, options, stream, idempotencyKey: null, cancellationToken);
    }

    /// <summary>Drops what was staged when the silo failed to start; the start's failure is the one to report.</summary>
    private static async Task DropAsync(Task<StagedSubmission> staging)
    {
        try
        {
            await (await staging).DisposeAsync();
        }
        catch (Exception)
        {
            // Stopped, or failed on its own: either way the start's failure is reported instead.
        }
    }

    /// <summary>Accepts the staged file, or starts a batch whose items were committed by a run that died before starting it.</summary>
    private static async Task<bool> StartAsync(IServiceProvider services, string batchId, StagedSubmission staged, FileInfo input, BatchOptions options,
        CancellationToken cancellationToken)
    {
        if (staged.Decided is { Rejection: SubmissionRejection.BatchExists })
        {
            var grains = services.GetRequiredService<IGrainFactory>();
            var committed = await services.GetRequiredService<IItemStore>().CountAsync(batchId, cancellationToken);
            await grains.GetGrain<IPoolGrain>(PoolName).Reserve(batchId, (int)committed.Total, options.Priority);
            await grains.GetGrain<IBatchGrain>(batchId).Start(new BatchSpec(PoolName, (int)committed.Total, options));
            return true;
        }

        var result = await services.GetRequiredService<BatchSubmitter>().AcceptAsync(staged, cancellationToken);
        if (result.Accepted)
        {
            await Console.Error.WriteLineAsync($"Batch {batchId}: {result.ItemCount} items accepted.");
            return true;
        }

        await Console.Error.WriteLineAsync($"Rejected {input.FullName}: {result.Reason}");
        foreach (var error in result.Errors)
        {
            await Console.Error.WriteLineAsync($"  {error}");
        }

        return false;
    }

    private static async Task<(long Succeeded, long Failed)> WriteResultsAsync(IItemStore store, string batchId, FileInfo output, CancellationToken cancellationToken)
    {
        output.Directory?.Create();
        var temporary = output.FullName + ".tmp";
        (long, long) counts;
        await using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 64 * 1024, useAsync: true))
        {
            counts = await BatchOutputWriter.WriteAsync(store.ReadResultsAsync(batchId, cancellationToken), batchId, stream, cancellationToken);
        }

        File.Move(temporary, output.FullName, overwrite: true);
        return counts;
    }

    private static async Task<string> BatchIdAsync(FileInfo input, CancellationToken cancellationToken)
    {
        await using var stream = input.OpenRead();
        var hash = await SHA256.HashDataAsync(stream, cancellationToken);
        return "run-" + Convert.ToHexStringLower(hash.AsSpan(0, 12));
    }
}

/// <summary>
/// Follows a batch to its end, or until its pool pauses (the provider refused the pool: the batch could
/// not end): a live progress bar on a terminal, plain lines when output is redirected.
/// </summary>
internal static class RunProgress
{
    /// <summary>How often the batch is asked how far it got: also how late its end is noticed.</summary>
    private static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(50);
    private static readonly TimeSpan PlainLineInterval = TimeSpan.FromSeconds(2);

    public static async Task<(BatchStatus Status, string? PausedReason)> FollowAsync(IBatchGrain batch, IPoolGrain pool, CancellationToken cancellationToken)
    {
        var first = await batch.GetStatus();
        var meter = new RateMeter(first.Done);
        if (Console.IsOutputRedirected || Console.IsErrorRedirected)
        {
            return await FollowPlainAsync(batch, pool, meter, cancellationToken);
        }

        var status = first;
        string? pausedReason = null;
        var progress = AnsiConsole.Progress();
        progress.AutoClear = false;
        await progress
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn())
            .StartAsync(async context =>
            {
                var task = context.AddTask("starting", maxValue: Math.Max(1, first.Total));
                while (true)
                {
                    status = await batch.GetStatus();
                    task.Value = status.Done;
                    task.Description = Describe(status, meter);
                    if (status.IsFinished || (pausedReason = await PausedReasonAsync(pool)) is not null)
                    {
                        return;
                    }

                    await Task.Delay(PollInterval, cancellationToken);
                }
            });
        return (status, pausedReason);
    }

    private static async Task<(BatchStatus, string?)> FollowPlainAsync(IBatchGrain batch, IPoolGrain pool, RateMeter meter, CancellationToken cancellationToken)
    {
        var lastLine = Stopwatch.StartNew();
        while (true)
        {
            var status = await batch.GetStatus();
            var pausedReason = status.IsFinished ? null : await PausedReasonAsync(pool);
            var stop = status.IsFinished || pausedReason is not null;
            if (stop || lastLine.Elapsed >= PlainLineInterval)
            {
                Console.WriteLine($"progress: {Describe(status, meter)}");
                lastLine.Restart();
            }

            if (stop)
            {
                return (status, pausedReason);
            }

            await Task.Delay(PollInterval, cancellationToken);
        }
    }

    private static async Task<string?> PausedReasonAsync(IPoolGrain pool) => (await pool.GetSnapshot()).PausedReason;


    private static string Describe(BatchStatus status, RateMeter meter)
    {
        var done = status.Done;
        var rate = meter.Rate(done);
        var remaining = status.Total - done;
        var eta = rate > 0 ? TimeSpan.FromSeconds(remaining / rate).ToString(@"hh\:mm\:ss") : "--:--:--";
        return $"{done}/{status.Total} done, {status.Failed} failed, {status.Running} in flight, {rate:0.0} items/s, ETA {eta}";
    }

    /// <summary>Items per second finished by this run (items done before a resume do not count).</summary>
    private sealed class RateMeter(long doneAtStart)
    {
        private readonly Stopwatch _clock = Stopwatch.StartNew();

        public double Rate(long done) => done > doneAtStart ? (done - doneAtStart) / _clock.Elapsed.TotalSeconds : 0;
    }
}
