#!/usr/bin/env python3
"""Measures what Nightshift's `run` costs against the least a client can do: the baseline client
(bench/Baseline, one HttpClient and a SemaphoreSlim of --max-running slots, closed loop, nothing
stored) and `run` send the same JSONL file to the same mock model process, one after the other, and
the mock counts every call itself.

  bench/hot-benchmark.py SCENARIO [ROUNDS] [ITEMS]   (default 3 rounds of the scenario's items)

Scenarios:
  little     --max-running 50, 100 ms a call, 20,000 items: Little's law's ideal is
             items x latency / cap = 40 s; each tool's wall time against it
  little-5k  the same with 5,000 items (ideal 10 s), where start-up weighs more
  zero       --max-running 256, no latency, 20,000 items: items/s of each
  restart    --max-running 50, 100 ms, 5,000 items: `run` is killed with SIGKILL once half the items
             are in its store, then the same command runs again; kill -> first new completion (as
             the mock sees it) and the duplicate calls (the mock's calls minus the items) beside the
             calls in flight at the kill and those answered but not yet in the store, which are what
             a resume must call again; the baseline runs uninterrupted beside it

Wall time runs from starting a process to its exit (the baseline also prints its own, from the
process's start time, and from its first request to its last answer). From the mock, whose counters
are reset before each process: start-up (process start to the first call), calls/s from the first
call to the last answer, and the time-weighted average of the calls in flight over that span. The
two tools take turns going first, round by round. The last lines are a table of the rounds' medians,
with Nightshift's figure divided by the baseline's.

One mock serves the whole benchmark; each `run` gets a fresh store. A process is killed after
ROUND_TIMEOUT seconds (default 300). Exits non-zero when a process fails or times out, an item is not
answered, or the mock saw more calls at once than the cap (the work folder with the logs is then
kept and named). The Release builds are made first (NO_BUILD=1 skips that). SILO_DLL=<path> runs
another build of Nightshift.Silo.dll (e.g. the previous commit's, for a before/after).
"""
import json, os, shutil, signal, statistics, subprocess, sys, tempfile, time
from harness import ROOT, http, start_mock, succeeded, wait_for

SILO = os.environ.get("SILO_DLL") or os.path.join(ROOT, "src/Silo/bin/Release/net10.0/Nightshift.Silo.dll")
BASELINE = os.path.join(ROOT, "bench/Baseline/bin/Release/net10.0/Nightshift.Baseline.dll")
ROUND_TIMEOUT = float(os.environ.get("ROUND_TIMEOUT", "300"))

# name: (max running, mock latency in ms, default items)
SCENARIOS = {"little": (50, 100, 20000), "little-5k": (50, 100, 5000), "zero": (256, 0, 20000), "restart": (50, 100, 5000)}
TOOLS = ("baseline", "nightshift")


def write_input(path, items):
    """The lines bench/run-benchmark.sh generates: small chat prompts, max_tokens 64."""
    with open(path, "w") as f:
        for i in range(items):
            f.write('{"custom_id":"req-%07d","method":"POST","url":"/v1/chat/completions","body":{"model":"gpt-4o-mini",'
                    '"messages":[{"role":"user","content":"Summarise document %d in one sentence."}],"max_tokens":64}}\n' % (i, i))


def settled_stats(url):
    """The mock's stats once no call is in flight (a killed client's calls end as the mock notices)."""
    return wait_for(lambda: (stats := http("GET", f"{url}/stats"))["current"] == 0 and stats, "calls stayed in flight at the mock", 30)


def launch(tool, work, url, cap, store, log):
    if tool == "baseline":
        command = ["dotnet", BASELINE, "--endpoint", f"{url}/v1", "--model", "m", "--max-running", str(cap), "input.jsonl"]
    else:
        command = ["dotnet", SILO, "run", "input.jsonl", "--endpoint", f"{url}/v1", "--model", "m", "--max-running", str(cap),
                   "--store", store, "--out", os.path.join(os.path.dirname(store), "out.jsonl")]
    return subprocess.Popen(command, cwd=work, stdout=log, stderr=subprocess.STDOUT)


def finish(process):
    try:
        return process.wait(timeout=ROUND_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return f"killed after {ROUND_TIMEOUT:.0f} s"


def measured(tool, code, wall, started_at, stats, items, cap):
    """One process's figures; started_at is its start as unix seconds, comparable with the mock's unix ms."""
    span = (stats["last_departure"] - stats["first_arrival"]) / 1000 if stats["first_arrival"] else 0
    result = {
        "tool": tool, "code": code, "wall": wall, "items_per_s": items / wall,
        "startup": stats["first_arrival"] / 1000 - started_at if stats["first_arrival"] else float("nan"),
        "calls_per_s": stats["total"] / span if span > 0 else 0.0,
        "in_flight": stats["average_in_flight"], "peak": stats["peak"], "calls": stats["total"],
        "answered": stats["succeeded"], "duplicates": stats["total"] - items,
    }
    result["ok"] = code == 0 and stats["succeeded"] >= items and stats["peak"] <= cap
    return result


def run_once(tool, work, url, cap, items):
    """Runs a tool once to its end on a freshly reset mock (and, for `run`, a fresh store)."""
    http("POST", f"{url}/stats/reset")
    store = os.path.join(tempfile.mkdtemp(prefix=f"{tool}-", dir=work), "ns.db")
    log_path = os.path.join(os.path.dirname(store), f"{tool}.log")
    with open(log_path, "w") as log:
        started_at, started = time.time(), time.monotonic()
        code = finish(launch(tool, work, url, cap, store, log))
        wall = time.monotonic() - started
    result = measured(tool, code, wall, started_at, settled_stats(url), items, cap)
    if tool == "baseline" and code == 0:
        with open(log_path) as log:
            result["own"] = json.loads(log.read().strip().splitlines()[-1])
    return result


def run_killed(work, url, cap, items):
    """`run` killed with SIGKILL once half the items are in its store, then run again on that store."""
    http("POST", f"{url}/stats/reset")
    store = os.path.join(tempfile.mkdtemp(prefix="restart-", dir=work), "ns.db")
    with open(os.path.join(os.path.dirname(store), "nightshift.log"), "w") as log:
        started = time.monotonic()
        first = launch("nightshift", work, url, cap, store, log)
        wait_for(lambda: succeeded(store) >= items // 2 or first.poll() is not None, "the first run made no progress", ROUND_TIMEOUT)
        if first.poll() is not None:
            raise RuntimeError(f"the first run ended (exit {first.returncode}) before half its items were done; log in {work}")
        first.send_signal(signal.SIGKILL)
        killed_at = time.time()
        first.wait()
        stored = succeeded(store)
        before = settled_stats(url)
        # Reset, so what the mock counts from here on is the second run's alone.
        http("POST", f"{url}/stats/reset")
        relaunched_at = time.time()
        code = finish(launch("nightshift", work, url, cap, store, log))
        wall = time.monotonic() - started
    after = settled_stats(url)
    successes = http("GET", f"{url}/stats/successes")
    return {
        # Cut off by the kill: the calls that got no answer (the mock counts only answers it sent).
        "code": code, "wall": wall, "in_flight_at_kill": before["total"] - sum(before["status_counts"].values()), "stored_at_kill": stored,
        "unrecorded_at_kill": before["succeeded"] - stored,
        "duplicates": before["total"] + after["total"] - items,
        "relaunch": relaunched_at - killed_at,
        "first_call": after["first_arrival"] / 1000 - killed_at if after["first_arrival"] else float("nan"),
        "first_completion": successes[0] / 1000 - killed_at if successes else float("nan"),
        "peak": max(before["peak"], after["peak"]),
        "ok": code == 0 and max(before["peak"], after["peak"]) <= cap,
    }


def describe(r, ideal):
    against = f" = {ideal / r['wall']:.1%} of ideal" if ideal else ""
    own = f" (own: {r['own']['seconds']:.2f} s, first request to last answer {r['own']['first_request_to_last_response_seconds']:.2f} s)" if "own" in r else ""
    return (f"{r['tool']} {r['wall']:.2f} s{against}{own}, exit {r['code']}; {r['items_per_s']:.0f} items/s; start-up {r['startup']:.2f} s; "
            f"{r['calls_per_s']:.0f} calls/s first call to last answer; avg in flight {r['in_flight']:.1f}, peak {r['peak']}; "
            f"{r['calls']} calls, {r['answered']} answered, {r['duplicates']} duplicates")


def describe_restart(r):
    return (f"nightshift killed at {r['stored_at_kill']} stored ({r['in_flight_at_kill']} calls in flight cut off, {r['unrecorded_at_kill']} answered but not stored), "
            f"relaunched {r['relaunch']:.2f} s later; kill -> first new call {r['first_call']:.2f} s, first new completion {r['first_completion']:.2f} s; "
            f"{r['duplicates']} duplicate calls; both processes {r['wall']:.2f} s, exit {r['code']}")


def median(results, key):
    return statistics.median(r[key] for r in results)


def table(rows):
    print("| measure | baseline | Nightshift | Nightshift / baseline |")
    print("| --- | --- | --- | --- |")
    for name, baseline, nightshift, shown in rows:
        ratio = f"{nightshift / baseline:.2f}" if baseline else "-"
        print(f"| {name} | {shown(baseline)} | {shown(nightshift)} | {ratio} |")


def seconds(value):
    return f"{value:.2f} s"


def whole(value):
    return f"{value:.0f}"


def share(value):
    return f"{value:.1%}"


def summary(ideal, results):
    b, n = results["baseline"], results["nightshift"]
    rows = [("wall time, process start to exit", median(b, "wall"), median(n, "wall"), seconds)]
    if ideal:
        rows.append((f"share of the ideal {ideal:.1f} s", ideal / median(b, "wall"), ideal / median(n, "wall"), share))
    table(rows + [
        ("items/s, process start to exit", median(b, "items_per_s"), median(n, "items_per_s"), whole),
        ("calls/s, first call to last answer (mock)", median(b, "calls_per_s"), median(n, "calls_per_s"), whole),
        ("start-up, process start to first call (mock)", median(b, "startup"), median(n, "startup"), seconds),
        ("start-up share of the wall time", median(b, "startup") / median(b, "wall"), median(n, "startup") / median(n, "wall"), share),
        ("avg calls in flight, first to last call (mock)", median(b, "in_flight"), median(n, "in_flight"), lambda value: f"{value:.1f}"),
        ("peak calls in flight (mock)", max(r["peak"] for r in b), max(r["peak"] for r in n), whole),
        ("duplicate calls (the mock's calls minus the items)", max(r["duplicates"] for r in b), max(r["duplicates"] for r in n), whole),
    ])


def summary_restart(baseline, restarts):
    print("| measure | median |")
    print("| --- | --- |")
    for label, key, shown in (
            ("kill -> first new call", "first_call", seconds),
            ("kill -> first new completion", "first_completion", seconds),
            ("calls in flight at the kill (cut off, never answered)", "in_flight_at_kill", whole),
            ("answered but not yet stored at the kill", "unrecorded_at_kill", whole),
            ("duplicate calls (the mock's calls minus the items)", "duplicates", whole),
            ("Nightshift, first start to second exit", "wall", seconds)):
        print(f"| {label} | {shown(median(restarts, key))} |")
    print(f"| the baseline, uninterrupted | {seconds(median(baseline, 'wall'))} |")


def main():
    if len(sys.argv) < 2 or sys.argv[1] in ("-h", "--help"):
        print(__doc__)
        return 0 if len(sys.argv) > 1 else 2
    name = sys.argv[1]
    if name not in SCENARIOS:
        print(f"unknown scenario {name!r}\n{__doc__}", file=sys.stderr)
        return 2
    cap, latency_ms, default_items = SCENARIOS[name]
    rounds, items = (list(map(int, sys.argv[2:4])) + [3, default_items][len(sys.argv[2:4]):])[:2]
    ideal = items * latency_ms / 1000 / cap
    if os.environ.get("NO_BUILD") != "1":
        for project in ("src/Silo", "tests/Nightshift.MockModel", "bench/Baseline"):
            subprocess.run(["dotnet", "build", os.path.join(ROOT, project), "-c", "Release", "-v", "quiet", "-nologo"], check=True, stdout=subprocess.DEVNULL)
    work = tempfile.mkdtemp(prefix="hot-benchmark-")
    write_input(os.path.join(work, "input.jsonl"), items)
    print(f"{name}: {rounds} rounds of {items} items, --max-running {cap}, mock latency {latency_ms} ms"
          + (f", ideal {ideal:.1f} s" if ideal else "") + f"; silo {SILO}", flush=True)
    results = {tool: [] for tool in TOOLS}
    restarts = []
    with open(os.path.join(work, "mock.log"), "w") as mock_log:
        mock, url = start_mock(["--latency-ms", str(latency_ms)], mock_log)
        try:
            for n in range(1, rounds + 1):
                # Taking turns at going first, so neither tool always runs on the machine the other just warmed.
                for tool in TOOLS if n % 2 else TOOLS[::-1]:
                    if tool == "nightshift" and name == "restart":
                        restarts.append(run_killed(work, url, cap, items))
                        print(f"round {n}: {describe_restart(restarts[-1])}", flush=True)
                    else:
                        results[tool].append(run_once(tool, work, url, cap, items))
                        print(f"round {n}: {describe(results[tool][-1], ideal)}", flush=True)
        finally:
            mock.kill()
            mock.wait()
    print(f"\nmedian of {rounds} ({name}: {items} items, --max-running {cap}, {latency_ms} ms):")
    if restarts:
        summary_restart(results["baseline"], restarts)
    else:
        summary(ideal, results)
    bad = [r for r in results["baseline"] + results["nightshift"] + restarts if not r["ok"]]
    if bad:
        print(f"kept {work} (mock.log, and each process's folder with its log)", flush=True)
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
