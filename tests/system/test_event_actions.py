"""The event queue beyond the flat list: grouped cards, stats buckets, select-all, the streamed
export (NDJSON and CSV), and the bulk actions (dismiss, acknowledge, reopen, delete) with their
tasks, roles and the organization boundary."""

import csv
import io
import json
import threading
import uuid

import requests

from sluice_harness import (UUID_RE, api_call, make_event, new_key, new_org, new_prefix, ok,
                            scaled, wait_for)

INLINE_MAX = 2000  # SL_ACTION_INLINE_MAX


def ingest_all(c, events, batch=2000):
    for i in range(0, len(events), batch):
        c.ingest(events[i:i + batch])


def by_ref(c, **params):
    """Every stored event of c's organization (matching params) by reference."""
    out = {}
    page = 1
    while True:
        body = c.list(page=page, page_size=1000, **params)
        for e in body["events"]:
            out[e["reference"]] = e
        if page >= body["pagination"]["pages"]:
            return out
        page += 1


def close_reason(c, title="False positive", **params):
    body = ok(api_call(c, "GET", "/close_reason", page_size=100, **params))
    return next(r for r in body["close_reasons"] if r["title"] == title)


def act(c, path, body, status=200, method="PUT"):
    return ok(api_call(c, method, "/event/" + path, body), status)


def wait_task(c, task_id, timeout=120):
    seen = []

    def probe():
        t = ok(api_call(c, "GET", f"/task/{task_id}"))
        seen.append(t)
        return t if t["complete"] else None
    t = wait_for(f"task {task_id}", probe, timeout, interval=0.1)
    return t, seen


def statuses(c, refs):
    stored = by_ref(c)
    return {r: stored[r]["status"]["name"] for r in refs}


# ---- grouped list, stats, select-all ----

def test_grouped_cards_stats_and_select_all(server):
    c = server.client()
    p = new_prefix("grp")
    evs = []
    # signature A: 3 events (the newest on day 9), B: 2, C: 1 (the newest of all)
    for i, day in enumerate((3, 9, 5)):
        evs.append(make_event(f"{p}-a{i}", signature="sig-a", title="Alpha", severity=2,
                              tags=["t-a", "common"], source="edr",
                              original_date=f"2024-03-{day:02d}T10:00:00Z",
                              observables=[{"value": "10.0.0.1", "data_type": "ip"}]))
    for i, day in enumerate((4, 6)):
        evs.append(make_event(f"{p}-b{i}", signature="sig-b", title="Beta", severity=3,
                              tags=["common"], source="fw",
                              original_date=f"2024-03-{day:02d}T10:00:00Z",
                              observables=[{"value": "10.0.0.2", "data_type": "ip"}]))
    evs.append(make_event(f"{p}-c0", signature="sig-c", title="Gamma", severity=4, tags=[],
                          source="fw", original_date="2024-03-20T10:00:00Z",
                          observables=[{"value": "10.0.0.1", "data_type": "ip"}]))
    c.ingest(evs)
    c.wait_stored(len(evs))
    stored = by_ref(c)
    sig = {k: stored[f"{p}-{k}0"]["signature"] for k in "abc"}

    body = ok(api_call(c, "GET", "/event", grouped="true"))
    assert body["pagination"] == {"total_results": 3, "pages": 1, "page": 1, "page_size": 25}
    cards = body["events"]
    assert [card["signature"] for card in cards] == [sig["c"], sig["a"], sig["b"]]
    assert [card["occurrences"] for card in cards] == [1, 3, 2]
    # the card's event is the newest of its signature
    assert cards[1]["event"]["reference"] == f"{p}-a1", cards[1]["event"]["reference"]
    assert cards[2]["event"]["reference"] == f"{p}-b1"
    assert cards[1]["event"]["uuid"] == stored[f"{p}-a1"]["uuid"]

    # the same filters as the flat list; paging over signatures; oldest first
    body = ok(api_call(c, "GET", "/event", grouped="true", severity="2,3",
                       sort_direction="asc", page_size=1, page=2))
    assert body["pagination"]["total_results"] == 2 and body["pagination"]["pages"] == 2
    assert [(x["signature"], x["occurrences"]) for x in body["events"]] == [(sig["a"], 3)]
    body = ok(api_call(c, "GET", "/event", grouped="true", end="2024-03-05T12:00:00Z"))
    assert {x["signature"]: x["occurrences"] for x in body["events"]} == {sig["a"]: 2,
                                                                           sig["b"]: 1}
    r = api_call(c, "GET", "/event", grouped="true", page_size=5000)
    assert r.status_code == 400 and "page_size" in r.json()["detail"], r.text

    # stats: every metric, with counts of the current filter
    st = ok(api_call(c, "GET", "/event/stats"))
    for metric in ("title", "observable", "source", "tag", "status", "severity", "data_type",
                   "event_rule", "signature"):
        assert metric in st, (metric, st)
    assert st["title"] == {"Alpha": 3, "Beta": 2, "Gamma": 1}
    assert st["tag"] == {"common": 5, "t-a": 3}
    assert st["status"] == {"New": 6}
    assert st["source"] == {"edr": 3, "fw": 3}
    assert st["observable"] == {"10.0.0.1": 4, "10.0.0.2": 2}
    assert st["signature"] == {sig["a"]: 3, sig["b"]: 2, sig["c"]: 1}
    assert {str(k): v for k, v in st["severity"].items()} == {"2": 3, "3": 2, "4": 1}
    assert st["data_type"] == {"ip": 6}
    assert list(st["title"]) == ["Alpha", "Beta", "Gamma"], "most frequent first"
    st = ok(api_call(c, "GET", "/event/stats", severity="3,4", top=1))
    assert st["title"] == {"Beta": 2}
    st = ok(api_call(c, "GET", "/event/stats", tag="t-a"))
    assert st["title"] == {"Alpha": 3} and st["status"] == {"New": 3}
    for bad in ("0", "1001", "x"):
        r = api_call(c, "GET", "/event/stats", top=bad)
        assert r.status_code == 400 and f"top={bad}" in r.json()["detail"], r.text

    # select-all: every uuid of the filter
    sa = ok(api_call(c, "GET", "/event/bulk_select_all"))
    assert sa["total"] == 6 and sa["truncated"] is False
    assert sorted(sa["uuids"]) == sorted(e["uuid"] for e in stored.values())
    sa = ok(api_call(c, "GET", "/event/bulk_select_all", signature=sig["b"]))
    assert sorted(sa["uuids"]) == sorted(stored[f"{p}-b{i}"]["uuid"] for i in range(2))
    assert sa["total"] == 2
    r = api_call(c, "GET", "/event/bulk_select_all", severity="9")
    assert r.status_code == 400 and "severity" in r.json()["detail"]


# ---- export ----

TRICKY_TITLE = '=HYPERLINK("http://x", "click"), now'


def test_export_ndjson_and_csv(server):
    c = server.client()
    p = new_prefix("exp")
    evs = [make_event(f"{p}-{i}", original_date=f"2024-04-{1 + i:02d}T00:00:00Z")
           for i in range(30)]
    evs[0].update(title=TRICKY_TITLE, tags=["-minus", "plain"], source="@src",
                  observables=[{"value": "1.2.3.4", "data_type": "ip"},
                               {"value": "+cmd", "data_type": "generic"}])
    evs[1].update(title='say "hi", bye')
    c.ingest(evs)
    c.wait_stored(len(evs))
    stored = by_ref(c)

    r = api_call(c, "GET", "/event/export")
    assert r.status_code == 200, r.text[:300]
    assert r.headers["Content-Type"].startswith("application/x-ndjson")
    assert r.headers["Content-Disposition"].startswith("attachment; filename=\"events-")
    assert r.headers["Content-Disposition"].endswith(".ndjson\"")
    lines = r.text.splitlines()
    assert r.text.endswith("\n") and len(lines) == 30
    docs = [json.loads(line) for line in lines]
    assert {d["reference"]: d for d in docs} == stored

    r = api_call(c, "GET", "/event/export", format="ndjson", title="bye")
    assert [json.loads(x)["reference"] for x in r.text.splitlines()] == [f"{p}-1"]

    r = api_call(c, "GET", "/event/export", format="csv")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/csv")
    assert r.headers["Content-Disposition"].endswith(".csv\"")
    assert "\r\n" in r.text
    rows = list(csv.reader(io.StringIO(r.text, newline="")))
    assert rows[0] == ["uuid", "reference", "title", "severity", "status", "signature",
                       "source", "tags", "observables", "original_date", "created_at", "case"]
    body = {row[1]: row for row in rows[1:]}
    assert len(rows) == 31 and set(body) == set(stored)
    row = body[f"{p}-0"]
    ev = stored[f"{p}-0"]
    assert row[0] == ev["uuid"]
    assert row[2] == "'" + TRICKY_TITLE, "a formula-like cell is defused with '"
    assert row[3] == str(ev["severity"]) and row[4] == "New"
    assert row[5] == ev["signature"] and row[6] == "'@src"
    assert row[7] == "'-minus;plain"
    assert row[8] == "1.2.3.4:ip;+cmd:generic"
    assert row[9] == ev["original_date"] and row[10] == ev["created_at"] and row[11] == ""
    assert body[f"{p}-1"][2] == 'say "hi", bye'
    row = body[f"{p}-5"]
    ev = stored[f"{p}-5"]
    assert row[7] == ";".join(ev["tags"])
    assert row[8] == ";".join(f"{o['value']}:{o['data_type']}" for o in ev["observables"])

    r = api_call(c, "GET", "/event/export", format="xml")
    assert r.status_code == 400 and "format=xml" in r.json()["detail"]
    r = api_call(c, "GET", "/event/export", start="yesterday")
    assert r.status_code == 400 and "start" in r.json()["detail"]


def test_export_large_is_streamed(server):
    c = server.client()
    p = new_prefix("big")
    n = scaled(20000, 5000)
    ingest_all(c, [make_event(f"{p}-{i}") for i in range(n)])
    c.wait_stored(n, timeout=300)

    r = c.s.get(c.url + "/api/v2.0/event/export", stream=True, timeout=300)
    assert r.status_code == 200
    assert r.headers.get("Transfer-Encoding") == "chunked", r.headers
    assert "Content-Length" not in r.headers
    count, refs = 0, set()
    for line in r.iter_lines():
        if line:
            refs.add(json.loads(line)["reference"])
            count += 1
    assert count == n and len(refs) == n

    r = c.s.get(c.url + "/api/v2.0/event/export", params={"format": "csv"}, stream=True,
                timeout=300)
    assert r.headers.get("Transfer-Encoding") == "chunked"
    rows = list(csv.reader(io.StringIO(r.content.decode(), newline="")))
    assert len(rows) == n + 1 and len({row[1] for row in rows[1:]}) == n

    # a client that leaves mid-export: the server lets go of it (no leak, no stuck handler)
    for _ in range(3):
        r = requests.get(c.url + "/api/v2.0/event/export", stream=True, timeout=60,
                         headers={"Authorization": f"Bearer {c.key}"})
        assert len(next(r.iter_content(64 * 1024))) > 0
        r.close()
    assert c.total() == n
    assert ok(api_call(c, "GET", "/event/bulk_select_all"))["total"] == n


def test_export_of_large_events_spans_pages(server):
    """Pages stop at about 4 MiB of output: 40 events of ~400 KiB take several pages, and none
    is lost or repeated at a page's edge."""
    c = server.client()
    p = new_prefix("huge")
    evs = [make_event(f"{p}-{i}", raw_log=json.dumps({"i": i, "pad": "x" * 400000}))
           for i in range(40)]
    for i in range(0, 40, 10):
        c.ingest(evs[i:i + 10])
    c.wait_stored(40)
    r = api_call(c, "GET", "/event/export")
    docs = [json.loads(line) for line in r.text.splitlines()]
    assert sorted(d["reference"] for d in docs) == sorted(e["reference"] for e in evs)
    assert all(len(d["raw_log"]) > 400000 for d in docs)
    r = api_call(c, "GET", "/event/export", format="csv")
    rows = list(csv.reader(io.StringIO(r.text, newline="")))
    assert sorted(row[1] for row in rows[1:]) == sorted(e["reference"] for e in evs)


# ---- actions ----

def three_signatures(c, p):
    """Events of signatures A (4), B (3), C (2); returns (stored by reference, signatures)."""
    evs = [make_event(f"{p}-a{i}", signature="A") for i in range(4)]
    evs += [make_event(f"{p}-b{i}", signature="B") for i in range(3)]
    evs += [make_event(f"{p}-c{i}", signature="C") for i in range(2)]
    c.ingest(evs)
    c.wait_stored(len(evs))
    stored = by_ref(c)
    return stored, {k: stored[f"{p}-{k.lower()}0"]["signature"] for k in "ABC"}


def test_dismiss_by_uuids_filter_related_and_reopen(server):
    c = server.client()
    p = new_prefix("dis")
    stored, sig = three_signatures(c, p)
    fp = close_reason(c)
    u = {ref: e["uuid"] for ref, e in stored.items()}

    res = act(c, "bulk_dismiss", {"events": [u[f"{p}-a0"]], "dismiss_reason_uuid": fp["uuid"],
                                  "dismiss_comment": "scanner"})
    assert UUID_RE.match(res["task_id"])
    assert res["complete"] is True and res["action"] == "dismiss" and res["changed"] == 1
    assert res["seen"] == 1
    ev = c.get_event(u[f"{p}-a0"]).json()
    assert ev["status"]["name"] == "Dismissed"
    assert ev["dismiss_reason"] == "False positive" and ev["dismiss_comment"] == "scanner"
    assert statuses(c, [f"{p}-a1", f"{p}-b0"]) == {f"{p}-a1": "New", f"{p}-b0": "New"}
    task = ok(api_call(c, "GET", f"/task/{res['task_id']}"))
    assert task["kind"] == "event_action" and task["state"] == "done"
    assert task["done"] == 1 and task["matched"] == 1 and task["total"] == 1

    # the same again changes nothing
    res = act(c, "bulk_dismiss", {"events": [u[f"{p}-a0"]], "dismiss_reason_uuid": fp["uuid"]})
    assert res["changed"] == 0

    # with the related events: the rest of A
    res = act(c, "bulk_dismiss", {"events": [u[f"{p}-a1"]], "include_related_events": True,
                                  "dismiss_reason_uuid": fp["uuid"]})
    assert res["changed"] == 3, res
    st = statuses(c, stored)
    assert {r for r, s in st.items() if s == "Dismissed"} == {f"{p}-a{i}" for i in range(4)}

    # dismiss_by_filter takes the related events by default
    res = act(c, "dismiss_by_filter", {"filter": {"signature": sig["B"]},
                                       "dismiss_reason_uuid": fp["uuid"]})
    assert res["changed"] == 3
    res = act(c, "dismiss_by_filter", {"events": [u[f"{p}-c0"]],
                                       "dismiss_reason_uuid": fp["uuid"]})
    assert res["changed"] == 2, "dismiss_by_filter includes related events by default"
    assert set(statuses(c, stored).values()) == {"Dismissed"}

    # reopen one, then by filter all the rest
    res = act(c, "reopen", {"events": [u[f"{p}-a0"]]})
    assert res["action"] == "reopen" and res["changed"] == 1
    ev = c.get_event(u[f"{p}-a0"]).json()
    assert ev["status"]["name"] == "New" and "dismiss_reason" not in ev, ev
    res = act(c, "reopen", {"filter": {"status": "Dismissed", "severity": [1, 2, 3, 4]}})
    assert res["changed"] == 8
    assert set(statuses(c, stored).values()) == {"New"}

    # a filter with several parameters, as GET /event takes them
    target = stored[f"{p}-b1"]
    res = act(c, "bulk_dismiss", {"filter": {"signature": sig["B"], "title": target["title"],
                                             "severity": str(target["severity"])},
                                  "dismiss_reason_uuid": fp["uuid"]})
    expect = sum(1 for i in range(3) if stored[f"{p}-b{i}"]["title"] == target["title"] and
                 stored[f"{p}-b{i}"]["severity"] == target["severity"])
    assert res["changed"] == expect >= 1


def test_action_validation(server):
    c = server.client()
    p = new_prefix("val")
    stored, sig = three_signatures(c, p)
    fp = close_reason(c)
    one = next(iter(stored.values()))["uuid"]

    def bad(path, body, field):
        r = api_call(c, "PUT", "/event/" + path, body)
        assert r.status_code == 400, (r.status_code, r.text)
        assert r.json()["error"].startswith(field), r.json()
        return r.json()

    bad("bulk_dismiss", {"events": [one]}, "dismiss_reason_uuid")
    bad("bulk_dismiss", {"events": [one], "dismiss_reason_uuid": str(uuid.uuid4())},
        "dismiss_reason_uuid")
    bad("bulk_dismiss", {"events": [one], "dismiss_reason_uuid": "nope"}, "dismiss_reason_uuid")
    bad("bulk_dismiss", {"dismiss_reason_uuid": fp["uuid"]}, "events, filter")
    bad("bulk_dismiss", {"events": [one], "filter": {}, "dismiss_reason_uuid": fp["uuid"]},
        "events, filter")
    bad("bulk_dismiss", {"events": [], "dismiss_reason_uuid": fp["uuid"]}, "events")
    bad("bulk_dismiss", {"events": ["x"], "dismiss_reason_uuid": fp["uuid"]}, "events[0]")
    bad("bulk_dismiss", {"events": [one], "dismiss_reason_uuid": fp["uuid"], "colour": 1},
        "colour")
    bad("bulk_dismiss", {"filter": {"severity": 9}, "dismiss_reason_uuid": fp["uuid"]},
        "filter: severity=9")
    bad("bulk_dismiss", {"filter": {"nonsense": 1}, "dismiss_reason_uuid": fp["uuid"]},
        "filter: unknown parameter nonsense")
    bad("bulk_dismiss", {"events": [one], "include_related_events": "yes",
                         "dismiss_reason_uuid": fp["uuid"]}, "include_related_events")
    bad("reopen", {"signature": sig["A"]}, "signature")
    bad("acknowledge", {"signatures": []}, "signatures")
    bad("acknowledge", {"signature": sig["A"], "events": [one]}, "events, filter, signature")
    r = api_call(c, "PUT", "/event/acknowledge", raw="[1]")
    assert r.status_code == 400
    r = api_call(c, "PUT", "/event/reopen", raw="{")
    assert r.status_code == 400 and r.json()["error"] == "malformed JSON"
    # nothing changed
    assert set(statuses(c, stored).values()) == {"New"}


def test_acknowledge_by_signature(server):
    c = server.client()
    p = new_prefix("ack")
    stored, sig = three_signatures(c, p)
    fp = close_reason(c)
    # one A event is dismissed first: acknowledging A leaves it
    act(c, "bulk_dismiss", {"events": [stored[f"{p}-a3"]["uuid"]],
                            "dismiss_reason_uuid": fp["uuid"]})

    res = act(c, "acknowledge", {"signature": sig["A"]})
    assert res["action"] == "acknowledge" and res["complete"] and res["changed"] == 3
    st = statuses(c, stored)
    assert {r: s for r, s in st.items() if r.startswith(f"{p}-a")} == {
        f"{p}-a0": "Acknowledged", f"{p}-a1": "Acknowledged", f"{p}-a2": "Acknowledged",
        f"{p}-a3": "Dismissed"}
    assert {s for r, s in st.items() if not r.startswith(f"{p}-a")} == {"New"}

    res = act(c, "acknowledge", {"signatures": [sig["B"], sig["C"]]})
    assert res["changed"] == 5
    assert ok(api_call(c, "GET", "/event/stats"))["status"] == {"Acknowledged": 8,
                                                                 "Dismissed": 1}

    res = act(c, "unacknowledge", {"signatures": [sig["A"], sig["B"]]})
    assert res["action"] == "unacknowledge" and res["changed"] == 6
    st = statuses(c, stored)
    assert st[f"{p}-a0"] == "New" and st[f"{p}-b2"] == "New" and st[f"{p}-c0"] == "Acknowledged"
    res = act(c, "unacknowledge", {"events": [stored[f"{p}-c1"]["uuid"]]})
    assert res["changed"] == 1
    assert statuses(c, [f"{p}-c0", f"{p}-c1"]) == {f"{p}-c0": "Acknowledged",
                                                   f"{p}-c1": "New"}

    r = api_call(c, "PUT", "/event/acknowledge", {"signature": "0" * 32})
    assert r.status_code == 404 and "0" * 32 in r.json()["detail"], r.text


def test_delete_is_for_admins_and_stays_deleted(server):
    c = server.client()
    analyst = server.client(new_key(server, "default", "analyst"))
    agent = server.client(new_key(server, "default", "agent"))
    p = new_prefix("del")
    evs = [make_event(f"{p}-{i}", signature=f"s{i % 2}") for i in range(6)]
    c.ingest(evs)
    c.wait_stored(6)
    stored = by_ref(c)
    victims = [stored[f"{p}-0"]["uuid"], stored[f"{p}-1"]["uuid"]]

    r = api_call(analyst, "POST", "/event/bulk_delete", {"events": victims})
    assert r.status_code == 403 and "analyst" in r.json()["detail"], r.text
    r = api_call(agent, "PUT", "/event/bulk_dismiss", {"events": victims})
    assert r.status_code == 403
    assert api_call(agent, "GET", "/event/export").status_code == 403
    # analysts triage
    res = act(analyst, "acknowledge", {"events": victims})
    assert res["changed"] == 2
    assert c.total() == 6

    res = act(c, "bulk_delete", {"events": victims}, method="POST")
    assert res["action"] == "delete" and res["changed"] == 2
    for v in victims:
        assert c.get_event(v).status_code == 404
    assert c.total() == 4
    assert ok(api_call(c, "GET", "/event/bulk_select_all"))["total"] == 4
    assert sum(1 for _ in api_call(c, "GET", "/event/export").text.splitlines()) == 4
    # deleting them again: they are gone
    r = api_call(c, "POST", "/event/bulk_delete", {"events": victims})
    assert r.status_code == 404 and victims[0] in r.json()["detail"]

    # a resend of a deleted event's reference stays deleted; new ones are stored
    c.ingest([evs[0], evs[1], make_event(f"{p}-new")])
    c.wait_stored(5)
    refs = set(by_ref(c))
    assert f"{p}-0" not in refs and f"{p}-1" not in refs and f"{p}-new" in refs

    # by filter
    res = act(c, "bulk_delete", {"filter": {"signature": stored[f"{p}-2"]["signature"]}},
              method="POST")
    assert res["changed"] == 2
    assert c.total() == 3


def test_large_action_runs_as_a_task_while_ingest_goes_on(server):
    c = server.client()
    p = new_prefix("task")
    n = scaled(12000, 6000)
    ingest_all(c, [make_event(f"{p}-{i}") for i in range(n)])
    c.wait_stored(n, timeout=300)
    fp = close_reason(c)

    r = api_call(c, "PUT", "/event/dismiss_by_filter",
                 {"filter": {"status": "New"}, "include_related_events": False,
                  "dismiss_reason_uuid": fp["uuid"]})
    res = ok(r, 202)
    assert r.headers["Location"] == res["task"]
    assert res["complete"] is False and res["action"] == "dismiss"
    assert res["state"] == "pending" and res["task"] == f"/api/v2.0/task/{res['task_id']}"
    # the api did at least one chunk of 1,000 and at most 2,000 before it answered
    assert 1000 <= res["seen"] <= INLINE_MAX and res["changed"] == res["seen"], res

    # events sent while the task runs are stored (ingest is not held up)
    late = [make_event(f"{p}-late-{i}") for i in range(500)]
    sender_errors = []

    def send():
        try:
            lc = server.client()
            for i in range(0, len(late), 50):
                lc.ingest(late[i:i + 50])
        except AssertionError as e:  # pragma: no cover - reported below
            sender_errors.append(str(e))
    th = threading.Thread(target=send)
    th.start()
    task, seen = wait_task(c, res["task_id"], timeout=300)
    th.join(120)
    assert not sender_errors, sender_errors
    assert task["state"] == "done" and task["kind"] == "event_action", task
    assert task["error"] is None
    assert task["done"] >= n and task["matched"] >= n and task["total"] == task["done"]
    progress = [t["done"] for t in seen]
    assert progress == sorted(progress), "progress never goes back"
    assert progress[0] >= res["seen"]
    c.wait_stored(n + len(late), timeout=120)
    st = ok(api_call(c, "GET", "/event/stats"))["status"]
    assert st["Dismissed"] >= n and sum(st.values()) == n + len(late), st
    refs = set(by_ref(c))
    assert all(e["reference"] in refs for e in late)


def test_an_action_task_survives_a_restart(servers):
    srv = servers()
    c = srv.client()
    p = new_prefix("restart")
    n = scaled(30000, 10000)
    ingest_all(c, [make_event(f"{p}-{i}") for i in range(n)])
    c.wait_stored(n, timeout=300)
    fp = close_reason(c)
    res = act(c, "bulk_dismiss", {"filter": {"status": "New"}, "dismiss_reason_uuid": fp["uuid"]},
              status=202)
    # stop the server while worker 0 runs the task (or, should it be that quick, once done)
    wait_for("worker 0 running the task",
             lambda: ok(api_call(c, "GET", f"/task/{res['task_id']}"))["state"] != "pending",
             120, interval=0.01)
    assert srv.terminate() == 0

    srv2 = servers(data_dir=srv.data_dir)
    c2 = srv2.client()
    task, _ = wait_task(c2, res["task_id"], timeout=300)
    assert task["state"] == "done", task
    assert task["done"] == n and task["matched"] == n and task["total"] == n, task
    assert ok(api_call(c2, "GET", "/event/stats"))["status"] == {"Dismissed": n}
    log = srv2.log_text()  # both runs' (the same data directory)
    tid = res["task_id"]
    assert log.count(f"action task {tid}: done") == 1
    if f"action task {tid}: stopped at cursor" in log:
        # handed back on the stop, taken up again from its cursor by the next start
        after = log.split(f"action task {tid}: stopped at cursor")[1]
        assert f"action task {tid}: dismiss in" in after, after[:2000]


# ---- organizations ----

def test_organization_boundary(server):
    a = server.client()  # the default organization's admin
    p = new_prefix("org")
    org_b, key_b = new_org(server, "org-b")
    b = server.client(key_b)
    a.ingest([make_event(f"{p}-a{i}", signature="S") for i in range(3)])
    b.ingest([make_event(f"{p}-b{i}", signature="S") for i in range(3)])
    a.wait_stored(3)
    b.wait_stored(3)
    ea, eb = by_ref(a), by_ref(b)
    ua = [e["uuid"] for e in ea.values()]
    ub = [e["uuid"] for e in eb.values()]
    fp_b = close_reason(b)

    # b never sees a's events
    assert ok(api_call(b, "GET", "/event", grouped="true"))["events"][0]["occurrences"] == 3
    assert sorted(ok(api_call(b, "GET", "/event/bulk_select_all"))["uuids"]) == sorted(ub)
    assert ok(api_call(b, "GET", "/event/stats"))["status"] == {"New": 3}
    refs = {json.loads(x)["reference"]
            for x in api_call(b, "GET", "/event/export").text.splitlines()}
    assert refs == set(eb)
    for path in ("/event/bulk_select_all", "/event/stats", "/event/export", "/event"):
        r = api_call(b, "GET", path, organization=server_default_org(a), grouped="true")
        assert r.status_code == 400 and r.json()["error"].startswith("organization"), r.text

    # another organization's uuid is 404 on every action, naming it, and nothing is done
    for path, body, method in (
            ("bulk_dismiss", {"dismiss_reason_uuid": fp_b["uuid"]}, "PUT"),
            ("dismiss_by_filter", {"dismiss_reason_uuid": fp_b["uuid"]}, "PUT"),
            ("acknowledge", {}, "PUT"), ("unacknowledge", {}, "PUT"), ("reopen", {}, "PUT"),
            ("bulk_delete", {}, "POST")):
        r = api_call(b, method, "/event/" + path, dict(body, events=[ub[0], ua[0]]))
        assert r.status_code == 404, (path, r.status_code, r.text)
        assert r.json()["detail"] == f"no such event: {ua[0]}", r.text
    # a close reason of another organization is unknown (the default organization's are
    # everyone's, as for rules)
    r = api_call(a, "PUT", "/event/bulk_dismiss",
                 {"events": [ua[0]], "dismiss_reason_uuid": fp_b["uuid"]})
    assert r.status_code == 400 and r.json()["error"].startswith("dismiss_reason_uuid"), r.text
    # a signature of another organization is unknown
    r = api_call(b, "PUT", "/event/acknowledge", {"signature": ea[f"{p}-a0"]["signature"]})
    assert r.status_code == 404
    assert set(statuses(b, eb).values()) == {"New"} and set(statuses(a, ea).values()) == {"New"}

    # the default organization's key: a selection across organizations is refused...
    r = api_call(a, "PUT", "/event/acknowledge", {"events": [ua[0], ub[0]]})
    assert r.status_code == 400 and r.json()["error"] == "selection spans organizations", r.text
    r = api_call(a, "PUT", "/event/acknowledge", {"events": [ub[0], ua[0]]})
    assert r.status_code == 400 and r.json()["error"] == "selection spans organizations"
    r = api_call(a, "PUT", "/event/acknowledge", {"events": [ub[0], str(uuid.uuid4())]})
    assert r.status_code == 404
    assert set(statuses(b, eb).values()) == {"New"} and set(statuses(a, ea).values()) == {"New"}
    # ...one organization's uuids act on it, named or not
    res = act(a, "acknowledge", {"events": [ub[0]]})
    assert res["changed"] == 1
    task = ok(api_call(a, "GET", f"/task/{res['task_id']}"))
    assert task["organization"] == org_b
    assert api_call(b, "GET", f"/task/{res['task_id']}").status_code == 200
    res = act(a, "unacknowledge", {"events": [ub[0]], "organization": org_b})
    assert res["changed"] == 1
    r = api_call(a, "PUT", "/event/reopen", {"events": [ua[0]], "organization": org_b})
    assert r.status_code == 404
    # a filter acts on the organization named (the key's own by default)
    res = act(a, "dismiss_by_filter", {"filter": {}, "organization": org_b,
                                       "dismiss_reason_uuid": fp_b["uuid"]})
    assert res["changed"] == 3
    assert set(statuses(b, eb).values()) == {"Dismissed"}
    assert set(statuses(a, ea).values()) == {"New"}
    sa = ok(api_call(a, "GET", "/event/bulk_select_all", organization=org_b))
    assert sorted(sa["uuids"]) == sorted(ub)
    st = ok(api_call(a, "GET", "/event/stats", organization=org_b))
    assert st["status"] == {"Dismissed": 3}
    # a task of the default organization is not b's to read
    res = act(a, "acknowledge", {"events": [ua[0]]})
    assert api_call(b, "GET", f"/task/{res['task_id']}").status_code == 404


def server_default_org(c):
    """The default organization's uuid (from one of its events)."""
    return c.list(page_size=1)["events"][0]["organization"]
