"""Every refused request gets its status and a JSON error, and stores nothing. "Nothing" is
checked with a barrier: after the bad requests one good event is sent, and once it is stored
with an empty backlog the total must be exactly the previous total plus one."""

import json

import requests

from sluice_harness import (API, make_event, make_events, metric, new_prefix, parse_metrics,
                            run_cli, wait_for)


def barrier(c, before, prefix):
    c.ingest([make_event(f"{prefix}-barrier")])
    c.wait_stored(before + 1)
    return before + 1


def assert_error(r, status):
    assert r.status_code == status, (r.status_code, r.text[:300])
    body = r.json()
    assert isinstance(body.get("error"), str) and body["error"], body
    return body


def test_malformed_json_offset(server):
    c = server.client()
    p = new_prefix("malformed")
    good = json.dumps({"events": make_events(p, 3)})
    cases = []
    # an unexpected byte deep inside the body: its offset is where the good prefix ends
    bad_pos = good.rindex("]")
    cases.append(good[:bad_pos] + "@" + good[bad_pos:])
    cases.append('{"events": [@]}')
    cases.append('{"events": [{"title": "a", "severity": 2x}]}')
    for body in cases:
        try:
            json.loads(body)
            raise AssertionError("test case is valid JSON")
        except json.JSONDecodeError as e:
            expected = len(body[:e.pos].encode())
        r = c.post_bulk(None, raw=body.encode())
        err = assert_error(r, 400)
        assert err["detail"]["offset"] == expected, (body[:60], err, expected)

    # byte-level faults: the offset is that of the marked byte
    head = b'{"events": [{"title": "'
    tail = b'", "description": "d", "reference": "r"}]}'
    for fault in (b"\xff\xfe", b"\xc0\xaf", b"\\ud800", b"\\u0000", b"\t", b"\x01"):
        body = head + b"ok " + fault + b" x" + tail
        r = c.post_bulk(None, raw=body)
        err = assert_error(r, 400)
        assert err["detail"]["offset"] == len(head) + 3, (fault, err)
    body = json.dumps({"events": make_events(p, 1, start=50)}).encode()
    err = assert_error(c.post_bulk(None, raw=body + b"  xyz"), 400)
    assert err["detail"]["offset"] == len(body) + 2, err
    deep = b'{"events": [{"title": "t", "description": "d", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}]}"
    assert_error(c.post_bulk(None, raw=deep), 400)

    for body in ('[]', '{"events": {}}', '{"evnts": []}', '', '"events"'):
        r = c.post_bulk(None, raw=body.encode())
        assert_error(r, 400)
    barrier(c, 0, p)


def test_body_limits(servers):
    srv = servers(env={"SLUICE_MAX_BODY_BYTES": "65536", "SLUICE_MAX_EVENTS_PER_REQUEST": "100"})
    c = srv.client()
    p = new_prefix("limits")
    big = make_events(p, 100)  # ~100 KB
    body = json.dumps({"events": big}).encode()
    assert len(body) > 65536
    assert_error(c.post_bulk(None, raw=body), 413)

    # the same through chunked transfer encoding (no Content-Length to check up front)
    def chunks():
        for i in range(0, len(body), 8192):
            yield body[i:i + 8192]
    r = c.s.post(srv.url + API + "/event/_bulk", data=chunks(),
                 headers={"Content-Type": "application/json"}, timeout=60)
    assert_error(r, 413)

    # under the byte limit but over the event count limit
    tiny = [{"title": "t", "description": "d", "reference": f"{p}-tiny-{i}"} for i in range(101)]
    tbody = json.dumps({"events": tiny}).encode()
    assert len(tbody) < 65536
    r = c.post_bulk(None, raw=tbody)
    assert 400 <= r.status_code < 500 and r.status_code != 429, (r.status_code, r.text)
    assert r.json()["error"]

    # exactly at the limits is fine
    ok = c.post_bulk(tiny[:100])
    assert ok.status_code == 200 and ok.json()["accepted"] == 100, ok.text
    c.wait_stored(100)
    barrier(c, 100, p)


def test_parse_bomb_413(server):
    """A body of many tiny values would make a parse tree 40 times its size: it is refused with
    413 before the tree is built, stores nothing, and the server goes on serving."""
    c = server.client()
    p = new_prefix("bomb")
    body = b'{"events":[' + b",".join([b"0"] * 1_000_000) + b"]}"
    r = assert_error(c.post_bulk(None, raw=body), 413)
    assert "times its size" in json.dumps(r), r
    barrier(c, 0, p)


def test_auth_and_roles(server):
    url = server.url + API + "/event/_bulk"
    p = new_prefix("auth")
    body = json.dumps({"events": make_events(p, 5)})
    hdr = {"Content-Type": "application/json"}
    for auth in (None, "", "Bearer", "Bearer ", "Bearer not-a-key", "Basic dXNlcjpwYXNz",
                 "Bearer " + server.admin_key() + "x", server.admin_key()):
        h = dict(hdr)
        if auth is not None:
            h["Authorization"] = auth
        r = requests.post(url, data=body, headers=h, timeout=30)
        assert_error(r, 401)
    for path in ("/event", "/event/queue_stats"):
        assert requests.get(server.url + API + path, timeout=30).status_code == 401
        assert requests.get(server.url + API + path, timeout=30,
                            headers={"Authorization": "Bearer nope"}).status_code == 401

    keys = {}
    for role in ("analyst", "agent"):
        r = run_cli(["apikey", "create", "--org", "default", "--role", role], server.data_dir)
        assert r.returncode == 0, r.stderr
        keys[role] = json.loads(r.stdout)["key"]
    analyst = server.client(keys["analyst"])
    agent = server.client(keys["agent"])
    admin = server.client()

    assert_error(analyst.post_bulk(make_events(p, 5)), 403)

    # agent ingests but may not read events
    a = agent.ingest(make_events(p, 2, start=100))
    assert a["accepted"] == 2
    admin.wait_stored(2)
    stored = admin.list()["events"]
    assert_error(agent.get("/api/v2.0/event"), 403)
    assert_error(agent.get_event(stored[0]["uuid"]), 403)
    assert agent.queue_stats()["size"] == 0  # any valid key may read queue_stats
    assert analyst.queue_stats()["size"] == 0
    assert analyst.get_event(stored[0]["uuid"]).status_code == 200
    assert analyst.total() == 2
    barrier(admin, 2, p)


def test_rejected_events(server):
    c = server.client()
    p = new_prefix("reject")
    g = make_events(p, 3)
    bad = [
        ("organization", dict(make_event(f"{p}-b0"), organization="someone-else")),
        ("uuid", dict(make_event(f"{p}-b1"), uuid="00000000-0000-0000-0000-000000000000")),
        ("status", dict(make_event(f"{p}-b2"), status={"name": "Closed"})),
        ("_meta", dict(make_event(f"{p}-b3"), _meta={"action": "task_end"})),
        ("title", dict(make_event(f"{p}-b4"), title=5)),
        ("severity", dict(make_event(f"{p}-b5"), severity="high")),
        ("observables", dict(make_event(f"{p}-b6"), observables="1.2.3.4")),
        ("tags", dict(make_event(f"{p}-b7"), tags=[1, 2])),
        ("reference", dict(make_event(f"{p}-b8"), reference={"id": 1})),
        ("raw_log", dict(make_event(f"{p}-b9"), raw_log=12345)),
    ]
    events = [g[0]] + [b for _, b in bad[:5]] + [g[1]] + [b for _, b in bad[5:]] + [g[2], 42]
    good_idx = {0, 6, len(events) - 2}
    r = c.post_bulk(events)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 3, body
    rej = {x["index"]: x["error"] for x in body["rejected"]}
    assert set(rej) == set(range(len(events))) - good_idx, body["rejected"]
    fields = [f for f, _ in bad[:5]] + [f for f, _ in bad[5:]]
    bad_idx = sorted(set(range(len(events) - 1)) - good_idx)
    for i, field in zip(bad_idx, fields):
        assert field in rej[i], (i, field, rej[i])
    c.wait_stored(3)
    assert {e["reference"] for e in c.list()["events"]} == {e["reference"] for e in g}
    for e in c.list()["events"]:
        assert e["status"]["name"] == "New"
    barrier(c, 3, p)


def test_backlog_full_429(servers, tmp_path):
    env = {"REFLEX_EVENT_PROCESSOR_DISABLED": "true",
           "REFLEX_EVENT_PROCESSOR_MAX_QUEUE_SIZE": "1000"}
    srv = servers(env=env)
    c = srv.client()
    p = new_prefix("full")
    c.ingest(make_events(p, 500))
    c.ingest(make_events(p, 500, start=500))
    wait_for("backlog of 1000", lambda: c.queue_stats()["size"] == 1000, 30)
    extra = make_events(p, 10, start=5000)
    for _ in range(3):
        r = c.post_bulk(extra)
        assert_error(r, 429)
        ra = r.headers.get("Retry-After")
        assert ra is not None and ra.isdigit() and int(ra) >= 1, r.headers
    assert c.queue_stats()["size"] == 1000
    assert c.total() == 0, "processing is disabled: nothing may be stored"
    m = parse_metrics(c.get("/metrics").text)
    assert metric(m, "sluice_http_responses_total", code="429") == 3

    # restart with processing on: exactly the 1000 acknowledged events are stored
    srv.terminate()
    srv2 = servers(data_dir=srv.data_dir)
    c2 = srv2.client()
    c2.wait_stored(1000, timeout=120)
    refs = set(c2.all_references())
    assert refs == {f"{p}-{i}" for i in range(1000)}
