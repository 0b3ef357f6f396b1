#!/usr/bin/env python3
"""Measures a cluster's throughput against the ideal: silos (`serve` processes) on one private
PostgreSQL server (fsync on), one pool of --max-running slots calling the loopback mock model at a
fixed latency, so the ideal is max_running / latency items/s.

Each round: a fresh database, fresh silos, a warm-up batch of 3,000 items, then the measured batch;
its time runs from acceptance (HTTP 201) to completion, as the batch itself reports it
(created/finished). Prints each round (with the mock's own peak concurrency and call count for the
measured batch) and the median.

  bench/cluster-benchmark.py [ROUNDS] [SILOS] [MAX_RUNNING] [LATENCY_MS] [ITEMS]   (default 3 3 100 100 20000)

A batch that has not completed after BATCH_TIMEOUT seconds (default 600) stops the benchmark; the
silos' logs are then kept and their folder named.
"""
import json, os, shutil, socket, statistics, subprocess, sys, tempfile, time, urllib.request
from datetime import datetime

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SILO = os.path.join(ROOT, "src/Silo/bin/Release/net10.0/Nightshift.Silo.dll")
MOCK = os.path.join(ROOT, "tests/Nightshift.MockModel/bin/Release/net10.0/Nightshift.MockModel.dll")
PG = os.path.join(ROOT, "bench/postgres.sh")
WARM_UP_ITEMS = 3000


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, content_type="application/json"):
    request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": content_type})
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.status, response.read()


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while True:
        try:
            if condition():
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.2)


def parse(timestamp):
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def run_batch(api, work, items):
    """Submits a batch of `items` lines and waits for it; returns its seconds from acceptance to completion."""
    lines = "".join('{"custom_id":"c-%d","body":{"messages":[{"role":"user","content":"item %d"}]}}\n' % (i, i) for i in range(items))
    status, body = http("POST", f"{api}/v1/batches?pool=bench", lines.encode(), "application/x-ndjson")
    batch = json.loads(body)["id"]
    state = {}

    def done():
        state.update(json.loads(http("GET", f"{api}/v1/batches/{batch}")[1]))
        return state["state"] == "completed" and state["counts"]["running"] == 0

    try:
        wait_until(done, float(os.environ.get("BATCH_TIMEOUT", "600")), "the batch did not complete")
    except TimeoutError:
        raise TimeoutError(f"the batch did not complete: {state.get('counts')}; silo logs in {work}")
    return (parse(state["finishedAt"]) - parse(state["createdAt"])).total_seconds()


def round_(work, pg_port, database, silos, max_running, latency_ms, items):
    subprocess.run([PG, "createdb", str(pg_port), database], check=True)
    store = f"Host=127.0.0.1;Port={pg_port};Username=postgres;Database={database}"
    mock = subprocess.Popen(["dotnet", MOCK, "--port", "0", "--latency-ms", str(latency_ms)], stdout=subprocess.PIPE, text=True)
    processes = [mock]
    try:
        mock_url = mock.stdout.readline().strip().removeprefix("listening on ").rstrip("/")
        http_ports = []
        for _ in range(silos):
            port = free_port()
            http_ports.append(port)
            env = dict(os.environ, ASPNETCORE_URLS=f"http://127.0.0.1:{port}", Nightshift__Silo__AdvertisedAddress="127.0.0.1")
            with open(os.path.join(work, f"{database}-silo-{len(http_ports)}.log"), "w") as log:
                processes.append(subprocess.Popen(["dotnet", SILO, "serve", "--store", store, "--silo-port", str(free_port()), "--gateway-port", str(free_port())],
                                                  cwd=work, env=env, stdout=log, stderr=subprocess.STDOUT))
        api = f"http://127.0.0.1:{http_ports[0]}"
        for port in http_ports:
            wait_until(lambda: http("GET", f"http://127.0.0.1:{port}/health/ready")[0] == 200, 90, "a silo did not become ready")
        wait_until(lambda: sum(s["status"] == "active" for s in json.loads(http("GET", f"{api}/v1/silos")[1])) == silos, 90, "the cluster did not form")
        pool = json.dumps({"provider": "openai", "endpoint": f"{mock_url}/v1", "model": "mock", "maxRunning": max_running}).encode()
        http("PUT", f"{api}/v1/pools/bench", pool)
        # A warm-up batch first, as a long-running cluster would be: the measured batch then runs on
        # jitted code and warm connection pools. The mock's counters are reset after it.
        run_batch(api, work, WARM_UP_ITEMS)
        http("POST", f"{mock_url}/stats/reset")
        seconds = run_batch(api, work, items)
        stats = json.loads(http("GET", f"{mock_url}/stats")[1])
        return items / seconds, stats["peak"], stats["total"]
    finally:
        for process in processes:
            process.kill()
            process.wait()


def main():
    rounds, silos, max_running, latency_ms, items = (list(map(int, sys.argv[1:])) + [3, 3, 100, 100, 20000][len(sys.argv) - 1:])[:5]
    subprocess.run(["dotnet", "build", os.path.join(ROOT, "Orleans.sln"), "-c", "Release", "-v", "quiet", "-nologo"], check=True, stdout=subprocess.DEVNULL)
    ideal = max_running * 1000 / latency_ms
    work = tempfile.mkdtemp()
    pg_port = free_port()
    subprocess.run([PG, "start", os.path.join(work, "pg"), str(pg_port)], check=True)
    try:
        rates = []
        for n in range(1, rounds + 1):
            rate, peak, calls = round_(work, pg_port, f"cluster_{n}", silos, max_running, latency_ms, items)
            rates.append(rate)
            print(f"round {n}: {rate:.0f} items/s = {rate / ideal:.1%} of the ideal {ideal:.0f}/s; mock peak {peak}, calls {calls}", flush=True)
        median = statistics.median(rates)
        print(f"median: {median:.0f} items/s = {median / ideal:.1%} of the ideal ({silos} silos, maxRunning {max_running}, {latency_ms} ms, {items} items)")
    finally:
        subprocess.run([PG, "stop", os.path.join(work, "pg")], check=False)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
