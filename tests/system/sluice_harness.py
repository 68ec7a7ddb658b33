"""Runs the real sluice binary for the system tests: start/stop a server on a free port with its
own data directory, a small API client, an event generator and a threaded bulk loader that
records which references were acknowledged.

Run (Debian's python3 with python3-pytest and python3-requests):
  SLUICE_BIN=build/sluice /usr/bin/python3 -m pytest -q tests/system
  SLUICE_BIN=build-asan/sluice SLUICE_TEST_TIME_FACTOR=3 /usr/bin/python3 -m pytest -q tests/system

Environment:
  SLUICE_BIN                 binary to test (default build/sluice, relative to the repo root)
  SLUICE_TEST_SCALE          multiplies the event counts of the load tests (default 1.0)
  SLUICE_TEST_TIME_FACTOR    multiplies every deadline (default 1.0; e.g. 3 for ASan builds)
"""

import hashlib
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
SCALE = float(os.environ.get("SLUICE_TEST_SCALE", "1.0"))
TIME_FACTOR = float(os.environ.get("SLUICE_TEST_TIME_FACTOR", "1.0"))
API = "/api/v2.0"
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MD5_RE = re.compile(r"^[0-9a-f]{32}$")
SANITIZER_RE = re.compile(r"ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:")


def scaled(n, minimum=1):
    """An event count scaled by SLUICE_TEST_SCALE."""
    return max(minimum, int(n * SCALE))


def deadline(seconds):
    """A monotonic deadline seconds * SLUICE_TEST_TIME_FACTOR from now."""
    return time.monotonic() + seconds * TIME_FACTOR


def sluice_bin():
    p = Path(os.environ.get("SLUICE_BIN", "build/sluice"))
    if not p.is_absolute():
        p = REPO_ROOT / p
    return p


def wait_for(what, probe, timeout, interval=0.05):
    """Polls probe() until it returns a truthy value or the deadline passes. Returns that value;
    on timeout raises AssertionError naming what was awaited and the last value seen."""
    end = deadline(timeout)
    last = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= end:
            raise AssertionError(f"timed out after {timeout * TIME_FACTOR:.0f}s waiting for "
                                 f"{what}; last value: {last!r}")
        time.sleep(interval)


def base_env(data_dir, extra=None):
    """The environment for a sluice process: the caller's, minus any SLUICE_/REFLEX_ settings
    that would leak into the test, plus the data dir, an OS-chosen port and extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLUICE_", "REFLEX_EVENT_PROCESSOR_"))}
    env["SLUICE_DATA_DIR"] = str(data_dir)
    env["SLUICE_LISTEN"] = "127.0.0.1:0"
    # Sanitizer builds: report to stderr (captured in the server log) and fail loudly.
    env.setdefault("ASAN_OPTIONS", "abort_on_error=0:detect_leaks=1")
    env.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


def run_cli(args, data_dir, env=None, timeout=60):
    """Runs `sluice ARGS` to completion and returns the CompletedProcess (text mode)."""
    return subprocess.run([str(sluice_bin())] + list(args), env=base_env(data_dir, env),
                          capture_output=True, text=True, timeout=timeout * TIME_FACTOR,
                          cwd=str(data_dir))


def group_pids(pgid):
    """Pids of live (non-zombie) processes in process group pgid."""
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        # fields after the parenthesised command name: state ppid pgrp ...
        rest = stat.rsplit(")", 1)[1].split()
        if int(rest[2]) == pgid and rest[0] != "Z":
            pids.append(int(d))
    return pids


def child_pids(ppid):
    """Pids of live (non-zombie) children of ppid."""
    out = []
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                rest = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(rest[1]) == ppid and rest[0] != "Z":
            out.append(int(d))
    return out


class Server:
    """One `sluice serve` process tree in its own session (so the whole tree can be killed)."""

    def __init__(self, data_dir, env=None, log_name="server.log"):
        self.data_dir = Path(data_dir)
        self.env = dict(env or {})
        self.log_path = self.data_dir.parent / f"{self.data_dir.name}-{log_name}"
        self.proc = None
        self.pgid = None
        self.addr = None
        self.returncode = None

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, wait=True, timeout=60):
        self.data_dir.mkdir(parents=True, exist_ok=True)
        addr_file = self.data_dir / "listen.addr"
        # A listen.addr left by a killed predecessor names a dead port: readiness must come
        # from the new process, so remove it first.
        if addr_file.exists():
            addr_file.unlink()
        self.log = open(self.log_path, "ab")
        self.log.write(f"\n==== start {time.strftime('%H:%M:%S')} ====\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen([str(sluice_bin()), "serve"],
                                     env=base_env(self.data_dir, self.env),
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True, cwd=str(self.data_dir))
        self.pgid = self.proc.pid
        self.returncode = None
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=60):
        addr_file = self.data_dir / "listen.addr"

        def addr():
            if self.proc.poll() is not None:
                raise AssertionError(f"sluice serve exited with {self.proc.returncode} before "
                                     f"listening:\n{self.log_tail()}")
            try:
                text = addr_file.read_text()
            except FileNotFoundError:
                return None
            return text.strip() if text.endswith("\n") else None

        self.addr = wait_for("listen.addr", addr, timeout)
        assert re.fullmatch(r"127\.0\.0\.1:\d+", self.addr), self.addr

        def healthy():
            if self.proc.poll() is not None:
                raise AssertionError(f"sluice serve exited with {self.proc.returncode}:\n"
                                     f"{self.log_tail()}")
            try:
                return requests.get(self.url + "/health", timeout=5).status_code == 200
            except requests.RequestException:
                return False

        wait_for("GET /health 200", healthy, timeout)
        return self

    @property
    def url(self):
        return f"http://{self.addr}"

    @property
    def pid(self):
        return self.proc.pid

    def admin_key(self):
        return (self.data_dir / "admin.key").read_text().strip()

    def client(self, key=None):
        return Client(self.url, key if key is not None else self.admin_key())

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def terminate(self, timeout=60):
        """SIGTERM the supervisor and wait for it to exit; returns its exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            self.returncode = self.proc.wait(timeout=timeout * TIME_FACTOR)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"sluice serve did not exit within {timeout}s of SIGTERM")
        return self.returncode

    def kill(self):
        """SIGKILL the whole process tree (supervisor, api, workers) and reap it."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.returncode = self.proc.wait(timeout=30)
        # Children are reparented to init after the supervisor dies; wait until they are gone
        # so a restart on the same data dir never races a survivor.
        wait_for("killed process group to disappear", lambda: not group_pids(self.pgid), 30)

    def cleanup(self):
        """Fixture teardown: stop whatever is still running, gently then forcefully."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                self.proc.wait(timeout=15 * TIME_FACTOR)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.log.close()

    def log_text(self):
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, n=60):
        return "\n".join(self.log_text().splitlines()[-n:])

    def sanitizer_reports(self):
        return [line for line in self.log_text().splitlines() if SANITIZER_RE.search(line)]

    # -- processes -------------------------------------------------------------------------
    def owns(self, pid):
        """True if pid is a live process of this server's process group (so it is ours)."""
        return pid in group_pids(self.pgid)


class Client:
    """A requests.Session with the API key; one per thread."""

    def __init__(self, url, key):
        self.url = url
        self.key = key
        self.s = requests.Session()
        if key:
            self.s.headers["Authorization"] = f"Bearer {key}"

    def close(self):
        self.s.close()

    def post_bulk(self, events, timeout=120, raw=None, headers=None):
        body = raw if raw is not None else json.dumps({"events": events})
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        return self.s.post(self.url + API + "/event/_bulk", data=body, headers=h,
                           timeout=timeout * TIME_FACTOR)

    def ingest(self, events):
        """Posts events and asserts a 200 with every event accepted; returns the JSON."""
        r = self.post_bulk(events)
        assert r.status_code == 200, (r.status_code, r.text[:500])
        body = r.json()
        assert body["accepted"] == len(events) and body["rejected"] == [], body
        return body

    def list(self, **params):
        r = self.s.get(self.url + API + "/event", params=params, timeout=120 * TIME_FACTOR)
        assert r.status_code == 200, (r.status_code, r.text[:500])
        return r.json()

    def total(self, **params):
        return self.list(page_size=1, **params)["pagination"]["total_results"]

    def get_event(self, event_uuid):
        return self.s.get(self.url + API + f"/event/{event_uuid}", timeout=60 * TIME_FACTOR)

    def queue_stats(self):
        r = self.s.get(self.url + API + "/event/queue_stats", timeout=60 * TIME_FACTOR)
        assert r.status_code == 200, (r.status_code, r.text[:500])
        return r.json()

    def get(self, path, **kw):
        return self.s.get(self.url + path, timeout=60 * TIME_FACTOR, **kw)

    def wait_stored(self, n, timeout=120, **params):
        """Waits until exactly n events (matching params) are stored and the backlog is empty;
        fails if more than n show up."""
        def probe():
            t = self.total(**params)
            assert t <= n, f"{t} events stored, expected {n}"
            return t == n and self.queue_stats()["size"] == 0
        wait_for(f"{n} stored events", probe, timeout)

    def all_references(self, page_size=1000, **params):
        """Every stored event's reference (one list entry per stored row), by paging."""
        refs = []
        first = self.list(page=1, page_size=page_size, **params)
        total = first["pagination"]["total_results"]
        pages = first["pagination"]["pages"]
        refs.extend(e["reference"] for e in first["events"])
        for page in range(2, pages + 1):
            refs.extend(e["reference"] for e in
                        self.list(page=page, page_size=page_size, **params)["events"])
        assert len(refs) == total, f"pages returned {len(refs)} events, total_results {total}"
        return refs


# -- events ----------------------------------------------------------------------------------

TITLES = ["Suspicious PowerShell Execution", "Multiple Failed Logons", "New Service Installed",
          "Possible Credential Dumping", "Outbound Connection to Rare Domain",
          "User Added to Privileged Group", "Scheduled Task Created", "Encoded Command Line"]
PROCS = ["powershell.exe", "cmd.exe", "rundll32.exe", "wmic.exe", "psexec.exe"]


def make_event(reference, rng=random, **overrides):
    """One event shaped like Reflex's tools/load_test.py: 3-6 observables, mostly "auto",
    raw_log a JSON string of the source document (~400-800 bytes)."""
    title = rng.choice(TITLES)
    user = f"user{rng.randrange(50):03d}"
    host = f"WS-{rng.randrange(30):04d}"
    src_ip = f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    dst_ip = f"203.0.{rng.randrange(256)}.{rng.randrange(1, 255)}"
    domain = f"cdn{rng.randrange(500)}.example.com"
    proc = rng.choice(PROCS)
    sev = rng.randint(1, 4)
    observables = [
        {"value": user, "data_type": "user", "tags": ["source-user"]},
        {"value": host, "data_type": "host"},
        {"value": src_ip, "data_type": "auto"},
    ]
    extra = [{"value": dst_ip, "data_type": "ip", "ioc": False},
             {"value": domain, "data_type": "auto"},
             {"value": hashlib.sha256(proc.encode()).hexdigest(), "data_type": "auto"}]
    observables += extra[:rng.randrange(4)]
    source_doc = {
        "@timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "event": {"code": 4688, "provider": "Microsoft-Windows-Security-Auditing",
                  "kind": "alert", "severity": sev},
        "host": {"name": host, "os": {"family": "windows", "version": "10.0.19045"}},
        "user": {"name": user, "domain": "CORP"},
        "process": {"pid": rng.randrange(1000, 60000), "name": proc,
                    "command_line": f"{proc} -nop -w hidden -enc SQBFAFgA"},
        "source": {"ip": src_ip, "port": rng.randrange(49152, 65535)},
        "destination": {"ip": dst_ip, "port": 443, "domain": domain},
    }
    ev = {
        "title": title,
        "description": f"{title} on {host} by {user}",
        "reference": reference,
        "tags": ["windows", rng.choice(["t1059", "t1003", "t1078", "t1110"])],
        "severity": sev,
        "tlp": rng.randrange(4),
        "source": "Winlog",
        "signature": hashlib.md5(str([title, user, host]).encode()).hexdigest(),
        "observables": observables,
        "raw_log": json.dumps(source_doc),
    }
    ev.update(overrides)
    return ev


def make_events(prefix, n, start=0, rng=None, **overrides):
    rng = rng or random.Random(hash((prefix, start)) & 0xffffffff)
    return [make_event(f"{prefix}-{i}", rng, **overrides) for i in range(start, start + n)]


# -- bulk loader -----------------------------------------------------------------------------

class Loader:
    """Posts `total` events as batches of `batch` from `threads` threads, each with its own
    keep-alive session. Records the references of every request that got a 200 (acked), of
    every request that got no answer (unknown: may or may not be stored) and every other
    status. 429 answers are retried after a short back-off (bounded by the deadline).

    stop_on_error: a transport error stops that thread (the server is gone); otherwise the
    thread keeps going with its next batch."""

    def __init__(self, url_fn, key, prefix, total, batch=500, threads=4, stop_on_error=True,
                 timeout=600):
        self.url_fn = url_fn  # callable: the server may move to a new port
        self.key = key
        self.prefix = prefix
        self.total = total
        self.batch = batch
        self.threads = threads
        self.stop_on_error = stop_on_error
        self.timeout = timeout
        self.lock = threading.Lock()
        self.next_batch = 0
        self.acked = []           # references acknowledged with 200
        self.unknown = []         # references of requests that got no answer
        self.statuses = {}        # status code -> count (excluding retried 429s)
        self.throttled = 0
        self.transport_errors = 0
        self.errors = []          # first few unexpected answers, for messages
        self.rejected = 0
        self.acked_events = 0
        self.stop = threading.Event()
        self._threads = []
        self.progress = threading.Condition(self.lock)

    @property
    def nbatches(self):
        return (self.total + self.batch - 1) // self.batch

    def _claim(self):
        with self.lock:
            if self.stop.is_set() or self.next_batch >= self.nbatches:
                return None
            b = self.next_batch
            self.next_batch += 1
            return b

    def _run(self, tid):
        rng = random.Random(tid * 7919 + len(self.prefix))
        session = requests.Session()
        session.headers["Authorization"] = f"Bearer {self.key}"
        session.headers["Content-Type"] = "application/json"
        end = deadline(self.timeout)
        try:
            while True:
                b = self._claim()
                if b is None:
                    return
                first = b * self.batch
                n = min(self.batch, self.total - first)
                refs = [f"{self.prefix}-{i}" for i in range(first, first + n)]
                body = json.dumps({"events": [make_event(r, rng) for r in refs]})
                while True:
                    if time.monotonic() > end:
                        with self.lock:
                            self.errors.append("loader deadline passed")
                        self.stop.set()
                        return
                    try:
                        r = session.post(self.url_fn() + API + "/event/_bulk", data=body,
                                         timeout=120 * TIME_FACTOR)
                    except requests.RequestException as e:
                        with self.lock:
                            self.unknown.extend(refs)
                            self.transport_errors += 1
                            if len(self.errors) < 5:
                                self.errors.append(f"transport: {e}")
                        session.close()
                        if self.stop_on_error:
                            return
                        break
                    if r.status_code == 429:
                        with self.lock:
                            self.throttled += 1
                        time.sleep(0.05)  # back-off before resending the same batch
                        continue
                    with self.lock:
                        self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
                        if r.status_code == 200:
                            body_json = r.json()
                            bad = {x["index"] for x in body_json.get("rejected", [])}
                            self.rejected += len(bad)
                            ok = [ref for i, ref in enumerate(refs) if i not in bad]
                            self.acked.extend(ok)
                            self.acked_events += len(ok)
                            self.progress.notify_all()
                        elif len(self.errors) < 5:
                            self.errors.append(f"HTTP {r.status_code}: {r.text[:300]}")
                    break
        finally:
            session.close()

    def start(self):
        for t in range(self.threads):
            th = threading.Thread(target=self._run, args=(t,), daemon=True)
            th.start()
            self._threads.append(th)
        return self

    def wait_acked(self, n, timeout=300):
        """Blocks until at least n events are acked (or the loader is done); returns the count."""
        end = deadline(timeout)
        with self.lock:
            while self.acked_events < n and any(t.is_alive() for t in self._threads):
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"only {self.acked_events} of {n} events acked in time")
                self.progress.wait(min(left, 0.5))
            return self.acked_events

    def join(self, timeout=900):
        end = deadline(timeout)
        for t in self._threads:
            t.join(max(0.0, end - time.monotonic()))
            assert not t.is_alive(), "loader thread did not finish in time"
        return self


def new_prefix(tag):
    return f"{tag}-{uuid.uuid4().hex[:8]}"


_METRIC_RE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{([^}]*)\})?\s+(\S+)(?:\s+\d+)?$')
_LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_metrics(text):
    """Prometheus text format -> {(name, ((label, value), ...)): float}. Fails on a line that
    is neither a comment nor a sample."""
    out = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = _METRIC_RE.match(line)
        assert m, f"not a Prometheus sample line: {line!r}"
        labels = tuple(sorted(_LABEL_RE.findall(m.group(2) or "")))
        out[(m.group(1), labels)] = float(m.group(3))
    return out


def metric(metrics, name, **labels):
    """The value of one sample (0.0 when absent)."""
    return metrics.get((name, tuple(sorted(labels.items()))), 0.0)


# ---- API helpers shared by the system tests ----

def api_call(c, method, path, body=None, raw=None, **params):
    """One request to the API (path after /api/v2.0) with c's key; body is sent as JSON, raw as
    is."""
    kw = {"params": params, "timeout": 120 * TIME_FACTOR}
    if raw is not None:
        kw["data"] = raw
        kw["headers"] = {"Content-Type": "application/json"}
    elif body is not None:
        kw["json"] = body
    return c.s.request(method, c.url + API + path, **kw)


def ok(r, status=200):
    """Asserts the status and returns the JSON body."""
    assert r.status_code == status, (r.status_code, r.text[:800])
    return r.json()


def bad(r, field, status=400):
    """Asserts a 400 whose error names field (as "<field>: ..."); returns the JSON."""
    assert r.status_code == status, (r.status_code, r.text[:800])
    body = r.json()
    assert body["error"].startswith(field), body
    assert body["field"] == field.split("[")[0], body
    return body


def new_key(srv, org_name, role="admin"):
    """A new API key of the organization named org_name."""
    k = run_cli(["apikey", "create", "--org", org_name, "--role", role], srv.data_dir)
    assert k.returncode == 0, k.stderr
    return json.loads(k.stdout)["key"]


def new_org(srv, name, role="admin"):
    """Creates an organization; returns its uuid and a key of the given role."""
    r = run_cli(["org", "create", name], srv.data_dir)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["uuid"], new_key(srv, name, role)
