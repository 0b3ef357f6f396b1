namespace Nightshift.MockModel;

/// <summary>A fault the mock injects into an admitted request.</summary>
internal enum InjectedFault
{
    None,
    TooManyRequests,
    InternalServerError,
    ServiceUnavailable,

    /// <summary>Anthropic's 529 "overloaded".</summary>
    Overloaded,
    Truncate,
    Hang,
}

/// <summary>
/// Picks each admitted request's fault with one uniform draw from a seeded generator, so the same seed
/// gives sequential requests the same faults.
/// </summary>
internal sealed class FaultInjector
{
    private readonly Lock _lock = new();
    private readonly Random _random;
    private readonly (double Probability, InjectedFault Fault)[] _faults;

    public FaultInjector(MockModelOptions options)
    {
        _random = options.Seed is { } seed ? new Random(seed) : new Random();
        _faults =
        [
            (options.Fault429, InjectedFault.TooManyRequests),
            (options.Fault500, InjectedFault.InternalServerError),
            (options.Fault503, InjectedFault.ServiceUnavailable),
            (options.Fault529, InjectedFault.Overloaded),
            (options.FaultTruncate, InjectedFault.Truncate),
            (options.FaultHang, InjectedFault.Hang),
        ];
    }

    /// <summary>The names <c>GET /stats</c> counts injected faults under, in a fixed order.</summary>
    public static IEnumerable<string> Names => Enum.GetValues<InjectedFault>().Where(fault => fault != InjectedFault.None).Select(Name);

    public static string Name(InjectedFault fault) => fault switch
    {
        InjectedFault.TooManyRequests => "429",
        InjectedFault.InternalServerError => "500",
        InjectedFault.ServiceUnavailable => "503",
        InjectedFault.Overloaded => "529",
        InjectedFault.Truncate => "truncate",
        InjectedFault.Hang => "hang",
        _ => throw new ArgumentOutOfRangeException(nameof(fault), fault, "no fault has no name"),
    };

    public InjectedFault Draw()
    {
        double draw;

        // Random is not thread-safe, and the lock also keeps the sequence of draws the seed's sequence.
        lock (_lock)
        {
            draw = _random.NextDouble();
        }

        // The faults share [0, 1) in consecutive slices, each as wide as its probability.
        foreach (var (probability, fault) in _faults)
        {
            if (draw < probability)
            {
                return fault;
            }

            draw -= probability;
        }

        return InjectedFault.None;
    }
}
