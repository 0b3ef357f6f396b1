using System.Globalization;

namespace Nightshift.Models;

/// <summary>
/// Reads the durations of OpenAI's <c>x-ratelimit-reset-*</c> headers: Go-style sequences such as
/// <c>20ms</c>, <c>1s</c>, <c>6m0s</c> or <c>1h2m3.5s</c>; a bare number is seconds.
/// </summary>
internal static class ResetDuration
{
    public static bool TryParse(string? text, out TimeSpan duration)
    {
        duration = TimeSpan.Zero;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        var span = text.AsSpan().Trim();
        if (double.TryParse(span, NumberStyles.Float, CultureInfo.InvariantCulture, out var bare))
        {
            duration = TimeSpan.FromSeconds(bare);
            return bare >= 0;
        }

        var total = 0.0;
        while (!span.IsEmpty)
        {
            var digits = 0;
            while (digits < span.Length && (char.IsAsciiDigit(span[digits]) || span[digits] == '.'))
            {
                digits++;
            }

            var letters = digits;
            while (letters < span.Length && char.IsAsciiLetter(span[letters]))
            {
                letters++;
            }

            if (digits == 0 || letters == digits || !double.TryParse(span[..digits], NumberStyles.Float, CultureInfo.InvariantCulture, out var value))
            {
                return false;
            }

            var milliseconds = span[digits..letters] switch
            {
                "h" => 3_600_000.0,
                "m" => 60_000.0,
                "s" => 1_000.0,
                "ms" => 1.0,
                "us" => 0.001,
                "ns" => 0.000_001,
                _ => double.NaN,
            };
            if (double.IsNaN(milliseconds))
            {
                return false;
            }

            total += value * milliseconds;
            span = span[letters..];
        }

        duration = TimeSpan.FromMilliseconds(total);
        return true;
    }
}
