"""What the benchmark scripts share: the mock model as a process of its own, its JSON endpoints,
polling, and the count of succeeded items in a SQLite store. Imported by the scripts beside it."""
import json, os, sqlite3, subprocess, time, urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MOCK = os.path.join(ROOT, "tests/Nightshift.MockModel/bin/Release/net10.0/Nightshift.MockModel.dll")


def http(method, url):
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=60) as response:
        return json.loads(response.read() or "null")


def start_mock(arguments, log):
    """Starts the Release mock model on a free port; returns the process and its base URL (no trailing slash)."""
    mock = subprocess.Popen(["dotnet", MOCK, "--port", "0", *arguments], stdout=subprocess.PIPE, stderr=log, text=True)
    line = mock.stdout.readline().strip()
    if not line.startswith("listening on "):
        mock.kill()
        mock.wait()
        raise RuntimeError(f"the mock model printed {line!r} instead of its address")
    return mock, line.removeprefix("listening on ").rstrip("/")


def wait_for(condition, what, timeout):
    """The condition's first truthy value, polled every 10 ms; TimeoutError(what) after timeout seconds."""
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.01)
    return value


def succeeded(store):
    """Succeeded items in a SQLite store, read-only beside the process writing it; 0 before the store exists."""
    try:
        with sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5) as db:
            return db.execute("SELECT COUNT(*) FROM ns_items WHERE state = 2").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
