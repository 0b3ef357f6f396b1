#!/usr/bin/env python3
"""Measures how close the one-shot `run` command gets to a rate-limited, faulty provider's limit
without losing an item: the mock model runs as a process of its own with token buckets and injected
faults, and counts every call itself; `run` calls it with --max-running 50.

  bench/rate-benchmark.py SCENARIO [ROUNDS] [ITEMS]   (default 3 rounds of 5000 items)

Scenarios:
  faults-rpm      the mock admits 400 requests/s (burst 1 s) and injects 2 % 429s (Retry-After 1 s),
                  2 % 500s, 3 % 503s, 1 % truncated bodies and 0.5 % 3-second hangs; run with --rpm 24000
  faults-learned  the same mock; run without --rpm, so Nightshift learns the limit from the headers
  tpm             the mock admits T tokens/s (no request limit; 12 completion tokens an answer, each
                  line asking max_tokens 16), T set so tokens bind at about 150 requests/s, well below
                  what 50 slots at 100 ms could do (500/s); run with --tpm T*60
  clean           no limits, no faults: items/s against Little's law's ideal, 50 / 0.1 s = 500/s

Every scenario answers after 100 ms. Each round runs on a fresh store and a fresh mock, and is killed
after ROUND_TIMEOUT seconds (default 300). It prints the wall time of `run`; from the mock's counts:
successes/s in steady state (the middle 80 % of the successes by count, over the time they span) and
over the whole run (from the first arrival to the last success), the share of 429s among all calls
(the buckets' own and the injected ones) and the buckets' alone, the peak and the time-weighted
average of the calls in flight; and whether anything was lost: the results must hold exactly one line
per input custom_id, each with status 200. The last line is the median of the rounds, against the
mock's limit.

Exits non-zero when `run` fails or times out, an item is lost or failed, or the mock saw more than 50
calls at once. The Release builds are made first (NO_BUILD=1 skips that). SILO_DLL=<path> runs another
build of Nightshift.Silo.dll against the same mock (e.g. the previous commit's, for a before/after).
"""
import json, os, random, shutil, statistics, subprocess, sys, tempfile, time, urllib.request
from harness import ROOT, http, start_mock

SILO = os.environ.get("SILO_DLL") or os.path.join(ROOT, "src/Silo/bin/Release/net10.0/Nightshift.Silo.dll")
MAX_RUNNING = 50
LATENCY_MS = 100
REQUESTS_PER_SECOND = 400
TPM_REQUESTS_PER_SECOND = 150
TPM_COMPLETION_TOKENS = 12
TPM_MAX_TOKENS = 16
ROUND_TIMEOUT = float(os.environ.get("ROUND_TIMEOUT", "300"))

FAULTY = ["--latency-ms", str(LATENCY_MS), "--rps", str(REQUESTS_PER_SECOND), "--burst-seconds", "1",
          "--fault-429", "0.02", "--retry-after-s", "1", "--fault-500", "0.02", "--fault-503", "0.03",
          "--fault-truncate", "0.01", "--fault-hang", "0.005", "--hang-ms", "3000"]

WORDS = ("the batch runner reads each line of the file and sends its request to the model while a pool "
         "keeps the number of calls in flight under its cap and a durable store remembers every result "
         "so that nothing is lost when a process dies summarise translate classify extract rewrite "
         "invoice contract review customer ticket product description weather report recipe poem").split()


def lines(items, max_tokens):
    """The input: `items` requests with modest prompts of 8 to 60 words, the same every round."""
    words = random.Random(20261122)
    for i in range(items):
        body = {"model": "x", "messages": [{"role": "user", "content": " ".join(words.choices(WORDS, k=words.randint(8, 60)))}]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        yield json.dumps({"custom_id": f"c-{i}", "body": body}, separators=(",", ":")) + "\n"


def mean_tokens(items):
    """What an input line costs, as the mock counts it (prompt + completion), from an unlimited mock."""
    with open(os.devnull, "w") as log:
        mock, url = start_mock(["--completion-tokens", str(TPM_COMPLETION_TOKENS)], log)
    try:
        sample = list(lines(min(items, 500), TPM_MAX_TOKENS))
        total = 0
        for line in sample:
            body = json.dumps(json.loads(line)["body"]).encode()
            request = urllib.request.Request(f"{url}/v1/chat/completions", data=body, method="POST", headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(request, timeout=60) as response:
                total += json.loads(response.read())["usage"]["total_tokens"]
        return total / len(sample)
    finally:
        mock.kill()
        mock.wait()


def scenario(name, items):
    """The mock's arguments, run's arguments, the line's max_tokens, and the limit as (rate per second, unit)."""
    if name == "faults-rpm":
        return FAULTY, ["--rpm", str(REQUESTS_PER_SECOND * 60)], None, (REQUESTS_PER_SECOND, "requests")
    if name == "faults-learned":
        return FAULTY, [], None, (REQUESTS_PER_SECOND, "requests")
    if name == "tpm":
        tokens_per_second = round(TPM_REQUESTS_PER_SECOND * mean_tokens(items))
        mock = ["--latency-ms", str(LATENCY_MS), "--tps", str(tokens_per_second), "--completion-tokens", str(TPM_COMPLETION_TOKENS)]
        return mock, ["--tpm", str(tokens_per_second * 60)], TPM_MAX_TOKENS, (tokens_per_second, "tokens")
    if name == "clean":
        return ["--latency-ms", str(LATENCY_MS)], [], None, (MAX_RUNNING * 1000 / LATENCY_MS, "ideal")
    raise ValueError(name)


def steady_rate(successes):
    """Successes per second over the middle 80 % of them by count."""
    low, high = len(successes) // 10, len(successes) - 1 - len(successes) // 10
    span = (successes[high] - successes[low]) / 1000
    return (high - low) / span if span > 0 else 0.0


def lost(input_path, out_path):
    """(missing or duplicated custom_ids, results that are not a 200)."""
    expected = {json.loads(line)["custom_id"] for line in open(input_path)}
    seen = {}
    failed = 0
    if os.path.exists(out_path):
        for line in open(out_path):
            result = json.loads(line)
            seen[result["custom_id"]] = seen.get(result["custom_id"], 0) + 1
            failed += (result.get("response") or {}).get("status_code") != 200
    missing = len(expected - seen.keys()) + len(seen.keys() - expected) + sum(count - 1 for count in seen.values())
    return missing, failed


def round_(setup, items):
    mock_arguments, run_arguments, max_tokens, (limit, unit) = setup
    work = tempfile.mkdtemp(prefix="rate-benchmark-")
    input_path, out_path = os.path.join(work, "input.jsonl"), os.path.join(work, "out.jsonl")
    with open(input_path, "w") as f:
        f.writelines(lines(items, max_tokens))
    with open(os.path.join(work, "mock.log"), "w") as mock_log, open(os.path.join(work, "run.log"), "w") as run_log:
        mock, url = start_mock(mock_arguments, mock_log)
        try:
            started = time.monotonic()
            run = subprocess.Popen(["dotnet", SILO, "run", input_path, "--endpoint", f"{url}/v1", "--model", "gpt-4o-mini",
                                    "--max-running", str(MAX_RUNNING), "--store", os.path.join(work, "store.db"), "--out", out_path, *run_arguments],
                                   cwd=work, stdout=run_log, stderr=subprocess.STDOUT)
            try:
                code = run.wait(timeout=ROUND_TIMEOUT)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
                code = f"killed after {ROUND_TIMEOUT:.0f} s"
            wall = time.monotonic() - started
            stats = http("GET", f"{url}/stats")
            successes = http("GET", f"{url}/stats/successes")
        finally:
            mock.kill()
            mock.wait()
    missing, failed = lost(input_path, out_path)
    whole_span = (successes[-1] - stats["first_arrival"]) / 1000 if successes else 0
    total = max(stats["total"], 1)
    result = {
        "code": code, "wall": wall, "limit": limit, "unit": unit,
        "steady": steady_rate(successes) if len(successes) > 1 else 0.0,
        "whole": len(successes) / whole_span if whole_span > 0 else 0.0,
        "share_429": (stats["rate_limited"] + stats["injected"]["429"]) / total,
        "share_bucket": stats["rate_limited"] / total,
        "peak": stats["peak"], "in_flight": stats["average_in_flight"],
        "missing": missing, "failed": failed, "calls": stats["total"],
        "tokens_per_success": stats["tokens_succeeded"] / max(stats["succeeded"], 1),
    }
    if code != 0 or missing or failed or stats["peak"] > MAX_RUNNING:
        result["kept"] = work
        print(f"  kept {work} (run.log, mock.log, out.jsonl)", flush=True)
    else:
        shutil.rmtree(work, ignore_errors=True)
    return result


def describe(r):
    rates = f"steady {r['steady']:.1f}/s, whole {r['whole']:.1f}/s"
    if r["unit"] == "tokens":
        rates += f" = steady {r['steady'] * r['tokens_per_success']:.0f} tokens/s of {r['limit']}/s"
    return (f"run {r['wall']:.1f} s (exit {r['code']}); {rates}; 429s {r['share_429']:.2%} of {r['calls']} calls "
            f"(bucket {r['share_bucket']:.2%}); peak {r['peak']}, avg in flight {r['in_flight']:.1f}; "
            f"lost {r['missing']}, failed {r['failed']}")


def summary(name, items, results):
    median = {key: statistics.median(r[key] for r in results) for key in ("wall", "steady", "whole", "share_429", "share_bucket", "in_flight", "tokens_per_success")}
    limit, unit = results[0]["limit"], results[0]["unit"]
    peak = max(r["peak"] for r in results)
    if unit == "tokens":
        steady, whole = median["steady"] * median["tokens_per_success"], median["whole"] * median["tokens_per_success"]
        against = f"steady {steady:.0f} tokens/s = {steady / limit:.1%} of {limit} tokens/s, whole {whole:.0f} tokens/s = {whole / limit:.1%} ({median['steady']:.1f} items/s)"
    elif unit == "requests":
        against = f"steady {median['steady']:.1f}/s = {median['steady'] / limit:.1%} of {limit}/s, whole {median['whole']:.1f}/s = {median['whole'] / limit:.1%}"
    else:
        against = f"steady {median['steady']:.1f}/s = {median['steady'] / limit:.1%} of Little's law's {limit:.0f}/s, whole {median['whole']:.1f}/s = {median['whole'] / limit:.1%}"
    print(f"median of {len(results)} ({name}, {items} items): {against}; run {median['wall']:.1f} s; "
          f"429s {median['share_429']:.2%} (bucket {median['share_bucket']:.2%}); peak {peak} of {MAX_RUNNING}, "
          f"avg in flight {median['in_flight']:.1f}; lost {sum(r['missing'] for r in results)}, failed {sum(r['failed'] for r in results)}")


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) > 1 else 2
    name = sys.argv[1]
    if name not in ("faults-rpm", "faults-learned", "tpm", "clean"):
        print(f"unknown scenario {name!r}\n{__doc__}", file=sys.stderr)
        return 2
    rounds, items = (list(map(int, sys.argv[2:4])) + [3, 5000][len(sys.argv[2:4]):])[:2]
    if os.environ.get("NO_BUILD") != "1":
        for project in ("src/Silo", "tests/Nightshift.MockModel"):
            subprocess.run(["dotnet", "build", os.path.join(ROOT, project), "-c", "Release", "-v", "quiet", "-nologo"], check=True, stdout=subprocess.DEVNULL)
    setup = scenario(name, items)
    print(f"{name}: {rounds} rounds of {items} items; mock {' '.join(setup[0])}; run {' '.join(setup[1]) or '(no rate options)'}", flush=True)
    results = []
    for n in range(1, rounds + 1):
        result = round_(setup, items)
        results.append(result)
        print(f"round {n}: {describe(result)}", flush=True)
    summary(name, items, results)
    bad = [r for r in results if r["code"] != 0 or r["missing"] or r["failed"] or r["peak"] > MAX_RUNNING]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
