"""/health, /metrics and queue_stats: shape and figures that match what happened."""

import os
import signal

import requests

from sluice_harness import (API, make_events, metric, new_prefix, parse_metrics, wait_for)


def test_health_metrics_queue_stats(servers):
    srv = servers(env={"REFLEX_EVENT_PROCESSOR_WORKER_COUNT": "2",
                       "REFLEX_EVENT_PROCESSOR_WORKER_CHECK_INTERVAL": "1"})
    c = srv.client()

    h = requests.get(srv.url + "/health", timeout=30)  # no auth
    assert h.status_code == 200
    assert h.headers["Content-Type"].startswith("application/json")
    health = h.json()
    assert health["status"] == "ok", health
    assert health["processing"] in (True, "enabled", "running"), health
    assert isinstance(health["workers"], dict), health
    assert health["backlog"] == 0

    p = new_prefix("obs")
    c.ingest(make_events(p, 120))
    c.ingest(make_events(p, 80, start=120))
    c.wait_stored(200)

    qs = c.queue_stats()
    assert qs["size"] == 0
    assert qs["worker_count"] == 2 and len(qs["workers"]) == 2, qs
    assert qs["respawns"] == 0 and qs["dead_workers"] == 0, qs
    assert qs["processing_disabled"] is False
    for w in qs["workers"]:
        assert isinstance(w["pid"], int) and srv.owns(w["pid"]), w
        assert w["alive"] is True, w
        assert isinstance(w["status"], str) and w["status"], w
        assert isinstance(w["processed_events"], int), w
    assert sum(w["processed_events"] for w in qs["workers"]) == 200, qs["workers"]
    assert len({w["pid"] for w in qs["workers"]}) == 2
    ev = qs["events"]
    assert (ev["accepted"], ev["stored"], ev["duplicates"]) == (200, 200, 0), ev

    r = requests.get(srv.url + "/metrics", timeout=30)
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain"), r.headers
    m = parse_metrics(r.text)
    assert metric(m, "sluice_events_stored_total") == 200
    assert metric(m, "sluice_worker_restarts_total") == 0
    assert metric(m, "sluice_http_responses_total", code="200") >= 3
    assert "# TYPE sluice_events_stored_total counter" in r.text

    # a 401 and a 404 are counted under their codes
    before = parse_metrics(requests.get(srv.url + "/metrics", timeout=30).text)
    assert requests.get(srv.url + API + "/event", timeout=30).status_code == 401
    assert requests.get(srv.url + "/no/such/path", timeout=30).status_code == 404
    after = parse_metrics(requests.get(srv.url + "/metrics", timeout=30).text)
    for code in ("401", "404"):
        assert (metric(after, "sluice_http_responses_total", code=code)
                == metric(before, "sluice_http_responses_total", code=code) + 1), code

    # kill a worker: respawns, restarts metric and a new pid
    victim = qs["workers"][0]["pid"]
    os.kill(victim, signal.SIGKILL)
    wait_for("a replacement worker", lambda: (lambda q: q["respawns"] == 1 and all(
        w["alive"] and w["pid"] != victim for w in q["workers"]))(c.queue_stats()), 60)
    m = parse_metrics(requests.get(srv.url + "/metrics", timeout=30).text)
    assert metric(m, "sluice_worker_restarts_total") == 1
    h = requests.get(srv.url + "/health", timeout=30).json()
    assert h["status"] == "ok", h

    # the replacement processes new events
    c.ingest(make_events(p, 10, start=1000))
    c.wait_stored(210)


def test_processing_disabled(servers):
    srv = servers(env={"REFLEX_EVENT_PROCESSOR_DISABLED": "true"})
    c = srv.client()
    health = requests.get(srv.url + "/health", timeout=30).json()
    assert health["processing"] in (False, "disabled"), health
    qs = c.queue_stats()
    assert qs["processing_disabled"] is True, qs

    p = new_prefix("off")
    c.ingest(make_events(p, 50))
    wait_for("backlog of 50", lambda: c.queue_stats()["size"] == 50, 30)
    health = requests.get(srv.url + "/health", timeout=30).json()
    assert health["backlog"] == 50, health
    assert c.total() == 0
    m = parse_metrics(requests.get(srv.url + "/metrics", timeout=30).text)
    assert metric(m, "sluice_events_stored_total") == 0
    assert c.queue_stats()["events"]["accepted"] == 50
