using Microsoft.AspNetCore.Http;
using Nightshift.Batches;

namespace Nightshift.Api.Security;

/// <summary>
/// Who calls the API: a user of a team (<c>Nightshift:Api:Principals</c>), or an admin (an admin key, an admin user, or
/// anyone when no key is configured). A non-admin sees and controls only its team's batches and cannot change pools.
/// </summary>
public sealed record Principal(string? User, string? Team, bool Admin)
{
    /// <summary>An admin key of <c>Nightshift:Api:Keys</c>: no user, every team.</summary>
    public static readonly Principal AdminKey = new(null, null, Admin: true);

    private static readonly object ItemKey = new();

    /// <summary>Who calls in <paramref name="context"/>: the key's principal, or an admin when the API has no keys.</summary>
    public static Principal Of(HttpContext context) => context.Items.TryGetValue(ItemKey, out var principal) && principal is Principal known ? known : AdminKey;

    /// <summary>The owner a batch submitted by this principal records.</summary>
    public BatchOwner? Owner => User is null && Team is null ? null : new BatchOwner(User, Team);

    /// <summary>Whether this principal may see the batch <paramref name="owner"/> submitted.</summary>
    public bool Sees(BatchOwner? owner) => Admin || (owner?.Team is { } team && team == Team);

    internal static void Set(HttpContext context, Principal principal) => context.Items[ItemKey] = principal;
}
