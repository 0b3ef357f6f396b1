using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Nightshift.Batches;
using Nightshift.Storage;

namespace Nightshift.Submission;

/// <summary>
/// What a submission asked for, as one SHA-256: its pool, its options and every item (line number,
/// custom_id, method, url, body), whatever form it came in (JSONL, a multipart file, JSON items). Two
/// submissions under one idempotency key are the same exactly when their fingerprints are.
/// </summary>
internal sealed class SubmissionFingerprint : IDisposable
{
    private readonly IncrementalHash _hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
    private string? _finished;

    public SubmissionFingerprint(string pool, BatchOptions options)
    {
        Append(pool);
        Append(JsonSerializer.Serialize(options));
    }

    /// <summary>Adds an item; a line that is not one (invalid) adds nothing, and the submission is refused anyway.</summary>
    public void Add(ItemRequest? item)
    {
        if (item is null || _finished is not null)
        {
            return;
        }

        Span<byte> index = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(index, item.Index);
        _hash.AppendData(index);
        Append(item.CustomId);
        Append(item.Method);
        Append(item.Url);
        Append(item.Body);
    }

    /// <summary>The fingerprint, as lower-case hex; nothing is added after the first call.</summary>
    public string Finish() => _finished ??= Convert.ToHexStringLower(_hash.GetHashAndReset());

    public void Dispose() => _hash.Dispose();

    /// <summary>Length-prefixed, so no two different sequences of strings hash alike.</summary>
    private void Append(string text)
    {
        var bytes = Encoding.UTF8.GetBytes(text);
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(length, bytes.Length);
        _hash.AppendData(length);
        _hash.AppendData(bytes);
    }
}
