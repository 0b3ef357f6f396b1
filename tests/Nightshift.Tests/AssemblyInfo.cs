// Several tests measure concurrency and progress from the model's side while others start clusters
// of silos and child processes; on a two-core machine running them side by side turns timing into
// luck. One at a time, every test sees the machine it was written for.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
