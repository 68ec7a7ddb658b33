"""Bulk ingest happy path: stored fields, GET by uuid, list filters and pagination."""

import json
import random
import uuid

from sluice_harness import MD5_RE, UUID_RE, make_event, new_prefix


def test_ingest_store_and_query(server):
    c = server.client()
    p = new_prefix("happy")
    rng = random.Random(7)
    special = make_event(
        f"{p}-special", rng,
        title="Happy Path Alpha Beacon", severity=4, tags=["alpha", "shared"], tlp=2,
        signature="0123456789abcdef0123456789abcdef",
        original_date="2024-01-10T12:00:00Z",
        observables=[{"value": "1.2.3.4", "data_type": "auto"},
                     {"value": "evil.example.com", "data_type": "auto"},
                     {"value": "alice", "data_type": "user", "tags": ["vip"]}])
    # 24 more, one per day from 2024-01-01, severities 1..3, half tagged "shared"
    others = []
    for i in range(24):
        ev = make_event(f"{p}-{i}", rng, severity=1 + i % 3,
                        original_date=f"2024-01-{1 + i:02d}T08:30:00Z",
                        tags=["bulk"] + (["shared"] if i % 2 else []))
        others.append(ev)
    twin = make_event(f"{p}-twin", rng, signature="0123456789abcdef0123456789abcdef",
                      original_date="2024-02-01T00:00:00Z", severity=1)
    events = [special] + others + [twin]

    resp = c.ingest(events)
    assert UUID_RE.match(resp["task_id"]) or resp["task_id"], resp
    assert isinstance(resp["response_time"], (int, float)) and resp["response_time"] >= 0
    c.wait_stored(len(events))

    everything = c.list(page_size=1000)
    assert everything["pagination"]["total_results"] == 26
    stored = {e["reference"]: e for e in everything["events"]}
    assert set(stored) == {e["reference"] for e in events}

    orgs = {e["organization"] for e in stored.values()}
    assert len(orgs) == 1 and UUID_RE.match(orgs.pop())
    uuids = {e["uuid"] for e in stored.values()}
    assert len(uuids) == 26 and all(UUID_RE.match(u) for u in uuids)
    for sent in events:
        got = stored[sent["reference"]]
        assert got["status"]["name"] == "New", got["status"]
        assert MD5_RE.match(got["signature"]), got["signature"]
        for field in ("title", "description", "severity", "tlp", "source", "tags"):
            assert got[field] == sent[field], (field, got[field], sent[field])
        assert json.loads(got["raw_log"]) == json.loads(sent["raw_log"])
        assert [o["value"] for o in got["observables"]] == [o["value"] for o in sent["observables"]]
        for o in got["observables"]:
            assert o["data_type"] != "auto", o

    sp = stored[special["reference"]]
    types = {o["value"]: o["data_type"] for o in sp["observables"]}
    assert types == {"1.2.3.4": "ip", "evil.example.com": "domain", "alice": "user"}, types
    assert stored[twin["reference"]]["signature"] == sp["signature"], \
        "the same client signature in one org must give the same stored signature"
    assert len({stored[o["reference"]]["signature"] for o in others}) > 1

    # GET by uuid: the same document
    r = c.get_event(sp["uuid"])
    assert r.status_code == 200, r.text
    assert r.json()["reference"] == special["reference"]
    assert r.json()["uuid"] == sp["uuid"]
    assert r.json()["observables"] == sp["observables"]
    assert c.get_event(str(uuid.uuid4())).status_code == 404
    assert c.get_event("not-a-uuid").status_code in (400, 404)

    def refs(**params):
        body = c.list(page_size=100, **params)
        got = {e["reference"] for e in body["events"]}
        assert body["pagination"]["total_results"] == len(got), body["pagination"]
        return got

    def expect(pred):
        return {e["reference"] for e in events if pred(e)}

    assert refs(severity=4) == {special["reference"]}
    assert refs(severity=2) == expect(lambda e: e["severity"] == 2)
    assert refs(tag="alpha") == {special["reference"]}
    assert refs(tag="shared") == expect(lambda e: "shared" in e["tags"])
    assert refs(title="happy path alpha") == {special["reference"]}, "title: case-insensitive substring"
    assert refs(title="Beacon") == {special["reference"]}
    assert refs(observable="1.2.3.4") == {special["reference"]}
    assert refs(observable="alice") == {special["reference"]}
    assert refs(signature=sp["signature"]) == {special["reference"], twin["reference"]}
    assert refs(status="New") == expect(lambda e: True)
    assert refs(status="Closed") == set()
    assert refs(tag="no-such-tag") == set()
    # time range on original_date, inclusive
    in_range = refs(start="2024-01-03T00:00:00Z", end="2024-01-05T23:59:59Z")
    assert in_range == {f"{p}-2", f"{p}-3", f"{p}-4"}, in_range
    assert refs(start="2024-01-31T00:00:00Z") == {twin["reference"]}
    assert refs(end="2024-01-01T23:59:59Z") == {f"{p}-0"}
    # filters combine
    assert refs(tag="shared", severity=4) == {special["reference"]}

    # pagination: 26 events, 10 per page
    seen = []
    for page in (1, 2, 3):
        body = c.list(page=page, page_size=10)
        pg = body["pagination"]
        assert (pg["total_results"], pg["pages"], pg["page"], pg["page_size"]) == (26, 3, page, 10)
        assert len(body["events"]) == (10 if page < 3 else 6)
        seen += [e["reference"] for e in body["events"]]
    assert sorted(seen) == sorted(stored), "pages must cover every event exactly once"
    beyond = c.list(page=4, page_size=10)
    assert beyond["events"] == [] and beyond["pagination"]["total_results"] == 26
    for bad in ({"page": 0}, {"page_size": 0}, {"page_size": 100000}, {"page": "x"},
                {"severity": "high"}, {"start": "yesterday"}):
        r = c.get("/api/v2.0/event", params=bad)
        assert r.status_code == 400, (bad, r.status_code, r.text)
        assert r.json().get("error"), r.text

    qs = c.queue_stats()
    assert qs["events"]["stored"] == 26 and qs["events"]["accepted"] == 26, qs["events"]


def test_event_without_reference_gets_one(server):
    """The reference is optional (Reflex generates a uuid4): each such event is stored once,
    with its own generated reference."""
    c = server.client()
    evs = [make_event("x") for _ in range(3)]
    for e in evs:
        del e["reference"]
    c.ingest(evs)
    c.wait_stored(3)
    got = c.list()["events"]
    refs = {e["reference"] for e in got}
    assert len(refs) == 3 and all(r for r in refs), refs


AUTO_TYPES = {
    "1.2.3.4": "ip",
    "2001:db8::1": "ip",
    "alice@example.com": "email",
    "https://x.example.com/a?b=1": "url",
    "d41d8cd98f00b204e9800998ecf8427e": "md5hash",
    "da39a3ee5e6b4b0d3255bfef95601890afd80709": "sha1hash",
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855": "sha256hash",
    "00:11:22:33:44:55": "mac",
    "S-1-5-21-3623811015-3361044348-30300820-1013": "sid",
    "evil.example.com": "domain",
    "hello world": "generic",
}


def test_observable_auto_types(server):
    c = server.client()
    obs = [{"value": v, "data_type": "auto"} for v in AUTO_TYPES]
    obs += [{"value": "-", "data_type": "auto"}, {"value": "", "data_type": "ip"}]
    obs += [{"value": "5.6.7.8", "data_type": "host"}]  # an explicit type is kept
    c.ingest([make_event("types", observables=obs)])
    c.wait_stored(1)
    got = {o["value"]: o["data_type"] for o in c.list()["events"][0]["observables"]}
    assert got == dict(AUTO_TYPES, **{"5.6.7.8": "host"}), got


def test_filters_take_values_literally(server):
    """Filter values are data, never patterns or query syntax: % and _ match themselves,
    quotes and backslashes are plain characters."""
    c = server.client()
    c.ingest([
        make_event("pct", title="100% sure", tags=['x"y', "it's"],
                   observables=[{"value": "O'Brien", "data_type": "user"},
                                {"value": 'a"b\\c', "data_type": "generic"}]),
        make_event("und", title="under_score"),
        make_event("bsl", title="back\\slash"),
        make_event("plain", title="Plain words"),
    ])
    c.wait_stored(4)

    def refs(**params):
        return sorted(e["reference"] for e in c.list(**params)["events"])

    assert refs(title="%") == ["pct"]
    assert refs(title="_") == ["und"]
    assert refs(title="under%score") == []
    assert refs(title="\\") == ["bsl"]
    assert refs(title="'") == []
    assert refs(title="PLAIN") == ["plain"]
    assert refs(tag='x"y') == ["pct"]
    assert refs(tag="it's") == ["pct"]
    assert refs(tag="x") == [], "tag is an exact match"
    assert refs(observable="O'Brien") == ["pct"]
    assert refs(observable='a"b\\c') == ["pct"]
    assert refs(observable="O") == [], "observable is an exact match"
