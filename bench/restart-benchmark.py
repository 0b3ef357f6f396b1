#!/usr/bin/env python3
"""Measures how fast the one-shot `run` command recovers from kill -9.

Each round: a fresh store, a 3,000-item batch on the simulated model (50 ms, --max-running 32),
kill -9 at 40 %, then the same command again at once. It reports, per round and as medians:
  restart-to-first-completion: from starting the second process to the first item it finishes;
  death-to-resume: from the kill to that same first completion (includes starting the process).

  bench/restart-benchmark.py [ROUNDS]      (default 5; builds the silo in Release first)
"""
import os, shutil, signal, statistics, subprocess, sys, tempfile, time
from harness import ROOT, succeeded, wait_for

SILO = os.path.join(ROOT, "src/Silo/bin/Release/net10.0/Nightshift.Silo.dll")
ITEMS, MAX_RUNNING = 3000, 32


def start(work, store):
    env = dict(os.environ, Nightshift__Simulated__LatencyMin="00:00:00.050", Nightshift__Simulated__LatencyMax="00:00:00.050")
    return subprocess.Popen(["dotnet", SILO, "run", "input.jsonl", "--store", store, "--max-running", str(MAX_RUNNING)],
                            cwd=work, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    subprocess.run(["dotnet", "build", os.path.join(ROOT, "src/Silo"), "-c", "Release", "-v", "quiet", "-nologo"], check=True, stdout=subprocess.DEVNULL)
    restarts, resumes = [], []
    for round_ in range(1, rounds + 1):
        work = tempfile.mkdtemp()
        try:
            with open(os.path.join(work, "input.jsonl"), "w") as f:
                for i in range(ITEMS):
                    f.write('{"custom_id":"r-%d","body":{"messages":[{"role":"user","content":"item %d"}]}}\n' % (i, i))
            store = os.path.join(work, "store", "ns.db")
            first = start(work, store)
            wait_for(lambda: succeeded(store) >= ITEMS * 4 // 10, "the run made no progress", 120)
            first.send_signal(signal.SIGKILL)
            killed_at = time.monotonic()
            first.wait()
            done = succeeded(store)
            restarted_at = time.monotonic()
            second = start(work, store)
            wait_for(lambda: succeeded(store) > done, "the run made no progress", 120)
            resumed_at = time.monotonic()
            if second.wait(timeout=120) != 0:
                raise RuntimeError("the resumed run did not succeed")
            restarts.append(resumed_at - restarted_at)
            resumes.append(resumed_at - killed_at)
            print(f"round {round_}: restart-to-first-completion {restarts[-1]:.2f} s, death-to-resume {resumes[-1]:.2f} s")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"median of {rounds}: restart-to-first-completion {statistics.median(restarts):.2f} s, death-to-resume {statistics.median(resumes):.2f} s")


if __name__ == "__main__":
    main()
