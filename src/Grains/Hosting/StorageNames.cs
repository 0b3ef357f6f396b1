namespace Nightshift.Hosting;

/// <summary>Names under which Nightshift's grains keep their state.</summary>
internal static class StorageNames
{
    /// <summary>The Orleans grain storage provider.</summary>
    public const string Grains = "nightshift";

    // Each grain class has its own state name: Orleans' ADO.NET storage does not key rows by grain
    // class, so two classes sharing a key and a state name would share one row.
    public const string PoolState = "pool";
    public const string BatchState = "batch";
}
