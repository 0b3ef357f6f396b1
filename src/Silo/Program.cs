using System.CommandLine;
using Nightshift.Silo.Cli;

var root = new RootCommand("Nightshift: very large batches of LLM calls, run durably on Microsoft Orleans.");
var serve = ServeCommand.Create();
root.Subcommands.Add(serve);
root.Subcommands.Add(RunCommand.Create());
root.Subcommands.Add(ApiCommand.Create());
root.SetAction((parseResult, cancellationToken) => ServeCommand.RunAsync(parseResult, serve, cancellationToken));
return await root.Parse(args).InvokeAsync();
