"""A sustained bulk load: every event of 100,000 (x SLUICE_TEST_SCALE) stored exactly once,
with readers querying all along; and the C load generator against the real server."""

import re
import subprocess
import threading
import time

from sluice_harness import TIME_FACTOR, Loader, new_prefix, scaled, sluice_bin


class Reader(threading.Thread):
    """Lists events (with and without filters) until stopped; records every status and checks
    that the total never goes down."""

    def __init__(self, client):
        super().__init__(daemon=True)
        self.c = client
        self.stop = threading.Event()
        self.statuses = {}
        self.totals = []

    def run(self):
        params = [{"page_size": 50}, {"severity": 4, "page_size": 10},
                  {"title": "Logons", "page": 3, "page_size": 20}, {"tag": "windows"}]
        i = 0
        while not self.stop.is_set():
            r = self.c.get("/api/v2.0/event", params=params[i % len(params)])
            self.statuses[r.status_code] = self.statuses.get(r.status_code, 0) + 1
            if r.status_code == 200 and i % len(params) == 0:
                self.totals.append(r.json()["pagination"]["total_results"])
            qs = self.c.get("/api/v2.0/event/queue_stats")
            self.statuses[qs.status_code] = self.statuses.get(qs.status_code, 0) + 1
            i += 1


def test_100k_events(servers):
    srv = servers()
    c = srv.client()
    total = scaled(100_000)
    p = new_prefix("load")
    reader = Reader(srv.client())
    reader.start()
    t0 = time.monotonic()
    ld = Loader(lambda: srv.url, srv.admin_key(), p, total, batch=500, threads=4,
                stop_on_error=False).start().join()
    t_ack = time.monotonic() - t0
    assert ld.errors == [], ld.errors
    assert ld.statuses == {200: ld.nbatches}, ld.statuses
    assert ld.acked_events == total and ld.rejected == 0

    c.wait_stored(total, timeout=600)
    t_stored = time.monotonic() - t0
    reader.stop.set()
    reader.join(60)
    assert set(reader.statuses) == {200}, reader.statuses
    assert reader.totals == sorted(reader.totals), "total_results went down during the load"
    assert len(reader.totals) >= 3
    print(f"{total} events: acked in {t_ack:.1f}s ({total / t_ack:.0f}/s), stored in "
          f"{t_stored:.1f}s ({total / t_stored:.0f}/s), 429s retried: {ld.throttled}")
    qs = c.queue_stats()
    assert qs["size"] == 0
    assert qs["events"]["accepted"] == total, qs["events"]
    assert qs["events"]["stored"] == total, qs["events"]
    assert qs["events"]["duplicates"] == 0, qs["events"]
    assert sum(w["processed_events"] for w in qs["workers"]) >= total, qs["workers"]

    refs = c.all_references()
    assert len(refs) == total
    assert set(refs) == set(ld.acked), "stored references differ from the acknowledged ones"


def test_loadgen_against_server(servers):
    """bench/loadgen (built next to the binary) runs clean against the real server, and its
    figures agree with the server's."""
    loadgen = sluice_bin().parent / "bench" / "loadgen"
    assert loadgen.is_file(), f"{loadgen} missing: build the whole project, not only sluice"
    srv = servers(env={"REFLEX_EVENT_PROCESSOR_WORKER_COUNT": "2"})
    n = scaled(20_000)
    r = subprocess.run([str(loadgen), "--url", srv.url, "--key", srv.admin_key(),
                        "--connections", "3", "--batch", "500", "--events", str(n),
                        "--seed", "7", "--ref-prefix", "lg"],
                       capture_output=True, text=True, timeout=300 * TIME_FACTOR)
    assert r.returncode == 0, (r.returncode, r.stdout, r.stderr)
    out = dict(re.findall(r"^(\w+): (.*)$", r.stdout, re.M))
    assert out["status"] == "ok" and out["drained"] == "yes", r.stdout
    assert int(out["events_accepted"]) == n and int(out["stored_delta"]) == n, r.stdout
    assert 800 <= int(out["avg_event_bytes"]) <= 1600, r.stdout
    for k in ("accepted_per_s", "stored_per_s", "ack_latency_p50_ms", "ack_latency_p99_ms"):
        assert float(out[k]) > 0, (k, r.stdout)
    c = srv.client()
    assert c.total() == n
    ev = c.list(page_size=1)["events"][0]
    assert ev["reference"].startswith("lg-") and 3 <= len(ev["observables"]) <= 6

    # a bad key: loadgen reports the 401 and exits 1
    bad = subprocess.run([str(loadgen), "--url", srv.url, "--key", "nope", "--events", "10"],
                         capture_output=True, text=True, timeout=60 * TIME_FACTOR)
    assert bad.returncode == 1 and "401" in bad.stdout + bad.stderr, (bad.stdout, bad.stderr)
