#!/usr/bin/python3
"""Times the analyst side on a loaded store: the grouped Event Queue, stats, export, and a bulk
dismiss of every event run as a task by worker 0 -- while loadgen keeps ingesting, to show how
much the task slows ingest down.

Usage (after scripts/build.sh release):
    /usr/bin/python3 bench/actions_bench.py [--events 500000] [--ingest-seconds 20]

Starts its own `build/sluice serve` on a free port and a fresh data directory, loads --events
events with build/bench/loadgen, then prints one `key: value` per line.
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def loadgen(url, key, args):
    out = subprocess.run(
        [os.path.join(ROOT, "build/bench/loadgen"), "--url", url, "--key", key, "--retry-429"] + args,
        check=True, capture_output=True, text=True).stdout
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def timed(fn):
    t0 = time.monotonic()
    r = fn()
    return r, time.monotonic() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=500000)
    ap.add_argument("--ingest-seconds", type=int, default=20)
    a = ap.parse_args()
    data = tempfile.mkdtemp(prefix="sluice-actions-bench-")
    env = dict(os.environ, SLUICE_DATA_DIR=data, SLUICE_LISTEN="127.0.0.1:0", REFLEX_EVENT_PROCESSOR_LOG_LEVEL="WARN")
    srv = subprocess.Popen([os.path.join(ROOT, "build/sluice"), "serve"], env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        addr_file = os.path.join(data, "listen.addr")
        for _ in range(200):
            if os.path.exists(addr_file) and os.path.getsize(addr_file):
                break
            time.sleep(0.05)
        url = "http://" + open(addr_file).read().strip()
        key = open(os.path.join(data, "admin.key")).read().strip()
        s = requests.Session()
        s.headers["Authorization"] = "Bearer " + key
        api = url + "/api/v2.0"

        lg = loadgen(url, key, ["--events", str(a.events), "--connections", "4"])
        print("loaded_events:", lg.get("stored_delta"))

        r, t = timed(lambda: s.get(api + "/event", params={"grouped": "true", "page_size": 50}))
        r.raise_for_status()
        print("grouped_signatures:", r.json()["pagination"]["total_results"])
        print("grouped_seconds: %.3f" % t)
        r, t = timed(lambda: s.get(api + "/event/stats"))
        r.raise_for_status()
        print("stats_seconds: %.3f" % t)

        def export():
            n = 0
            with s.get(api + "/event/export", params={"format": "ndjson"}, stream=True) as resp:
                resp.raise_for_status()
                for chunk in resp.iter_content(1 << 20):
                    n += len(chunk)
            return n
        nbytes, t = timed(export)
        print("export_mb: %.1f" % (nbytes / 1e6))
        print("export_events_per_s: %.0f" % (a.events / t))

        base = loadgen(url, key, ["--duration", str(a.ingest_seconds), "--connections", "2",
                                  "--events", "100000000", "--no-drain"])
        print("ingest_alone_per_s:", base.get("accepted_per_s"))

        reason = s.get(api + "/close_reason").json()["close_reasons"][0]["uuid"]
        t0 = time.monotonic()
        r = s.put(api + "/event/dismiss_by_filter",
                  data=json.dumps({"filter": {"status": "New"}, "include_related_events": False,
                                   "dismiss_reason_uuid": reason}))
        r.raise_for_status()
        task = r.json()["task_id"]
        side = subprocess.Popen(
            [os.path.join(ROOT, "build/bench/loadgen"), "--url", url, "--key", key, "--retry-429",
             "--duration", str(a.ingest_seconds), "--connections", "2", "--events", "100000000",
             "--no-drain"], stdout=subprocess.PIPE, text=True)
        while True:
            st = s.get(api + "/task/" + task).json()
            if st.get("complete"):
                break
            time.sleep(0.2)
        dt = time.monotonic() - t0
        out = dict(line.split(": ", 1) for line in side.communicate()[0].splitlines() if ": " in line)
        print("dismiss_state:", st["state"])
        print("dismiss_changed:", st["matched"])
        print("dismiss_seconds: %.2f" % dt)
        print("dismiss_events_per_s: %.0f" % (st["matched"] / dt))
        print("ingest_during_dismiss_per_s:", out.get("accepted_per_s"))
    finally:
        srv.terminate()
        srv.wait(60)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
