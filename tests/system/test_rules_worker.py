"""Event Rules and Intel Lists applied by the workers: actions, intel marks, the order of
rules, hit counts, changes reaching every worker within a second, mutes, moving events to
another organization without losing exactly-once, and lists polled from a URL."""

import http.server
import json
import threading
import time

from sluice_harness import (API, TIME_FACTOR, make_event, new_org, new_prefix, run_cli, wait_for)


def items(body, key):
    """A list endpoint's items, whether it answers a bare array or {key: [...]}."""
    return body if isinstance(body, list) else body[key]


def post(c, path, body, expect=(200, 201)):
    r = c.s.post(c.url + API + path, json=body, timeout=60 * TIME_FACTOR)
    assert r.status_code in expect, (path, r.status_code, r.text[:500])
    return r.json()


def put(c, path, body):
    r = c.s.put(c.url + API + path, json=body, timeout=60 * TIME_FACTOR)
    assert r.status_code == 200, (path, r.status_code, r.text[:500])
    return r.json()


def delete(c, path):
    r = c.s.delete(c.url + API + path, timeout=60 * TIME_FACTOR)
    assert r.status_code in (200, 204), (path, r.status_code, r.text[:500])


def rule(c, name, query, **actions):
    body = {"name": name, "query": query}
    body.update(actions)
    return post(c, "/event_rule", body)


def close_reason(c, title):
    body = c.get(API + "/close_reason").json()
    for cr in items(body, "close_reasons"):
        if cr["title"] == title:
            return cr["uuid"]
    raise AssertionError(f"no close reason {title}: {body}")


def events_by_ref(c, prefix):
    got = {}
    for e in c.list(page_size=1000)["events"]:
        if e["reference"].startswith(prefix):
            got[e["reference"]] = e
    return got


def wait_refs(c, prefix, n, timeout=60):
    def probe():
        return len(events_by_ref(c, prefix)) >= n
    wait_for(f"{n} events {prefix}*", probe, timeout)
    return events_by_ref(c, prefix)




def test_actions_order_and_hits(server):
    c = server.client()
    fp = close_reason(c, "False positive")
    r1 = rule(c, "tag scans", 'title = "Port scan"', priority=1, add_tags=True,
              tags_to_add=["scan"], update_severity=True, target_severity=4)
    # runs after r1 and sees its changes
    r2 = rule(c, "dismiss loud scans", 'tags contains "scan" and severity = 4', priority=2,
              dismiss=True, dismiss_reason=fp, dismiss_comment="scanner noise")
    r3 = rule(c, "case for evil", 'observables.value = "evil.example"', priority=3,
              create_new_case=True)
    r4 = rule(c, "inactive", "title exists", active=False, add_tags=True, tags_to_add=["never"])
    time.sleep(1.5)  # a change reaches the workers within a second
    p = new_prefix("act")
    c.ingest([make_event(f"{p}-scan-{i}", title="Port scan", severity=1) for i in range(5)] +
             [make_event(f"{p}-evil", title="Beacon", severity=2,
                         observables=[{"value": "evil.example", "data_type": "domain"}])] +
             [make_event(f"{p}-quiet", title="Quiet", severity=1)])
    got = wait_refs(c, p, 7)
    for i in range(5):
        e = got[f"{p}-scan-{i}"]
        assert "scan" in e["tags"] and "never" not in e["tags"]
        assert e["severity"] == 4
        assert e["status"]["name"] == "Dismissed"
        assert e["dismiss_reason"] == "False positive"
        assert e["dismiss_comment"] == "scanner noise"
        assert e["dismissed_by_rule"] is True
        assert e["event_rules"] == [r1["uuid"], r2["uuid"]]
    evil = got[f"{p}-evil"]
    assert evil["event_rules"] == [r3["uuid"]]
    assert evil["status"]["name"] == "Open" and len(evil["case"]) == 36
    quiet = got[f"{p}-quiet"]
    assert quiet["status"]["name"] == "New" and not quiet.get("event_rules")
    # hits are counted per rule in the store
    def hits(r):
        return c.get(API + f"/event_rule/{r['uuid']}").json()["hits"]
    wait_for("rule hits", lambda: hits(r1) == 5 and hits(r2) == 5 and hits(r3) == 1, 30)
    assert hits(r4) == 0
    assert c.get(API + f"/event_rule/{r1['uuid']}").json()["last_hit"]
    # filters see the dismissed status
    assert c.total(status="Dismissed") >= 5


def test_intel_lists_mark_observables(server):
    c = server.client()
    post(c, "/list", {"name": "Bad Nets", "list_type": "values", "data_type": "ip",
                      "tag_on_match": True, "flag_ioc": True,
                      "values": ["10.0.0.0/8", "192.0.2.7"]})
    post(c, "/list", {"name": "Known Good", "list_type": "values", "data_type": "domain",
                      "flag_safe": True, "values": "intranet.example\nwiki.example"})
    post(c, "/list", {"name": "Malware Bazaar", "list_type": "csv",
                      "csv_headers": ["date", "sha256", "md5"],
                      "csv_header_map": {"date": "none", "sha256": "sha256hash",
                                         "md5": "md5hash"},
                      "tag_on_match": True,
                      "values": [["2026-01-01", "a" * 64, "b" * 32]]})
    time.sleep(1.5)
    p = new_prefix("intel")
    c.ingest([make_event(f"{p}-1", title="Traffic", observables=[
        {"value": "10.20.30.40", "data_type": "ip"},
        {"value": "WIKI.example", "data_type": "domain"},
        {"value": "a" * 64, "data_type": "sha256hash"},
        {"value": "203.0.113.9", "data_type": "ip"}])])
    e = wait_refs(c, p, 1)[f"{p}-1"]
    obs = {o["value"]: o for o in e["observables"]}
    assert obs["10.20.30.40"]["ioc"] is True
    assert "list: bad-nets" in obs["10.20.30.40"]["tags"]
    assert "Bad Nets" in obs["10.20.30.40"]["intel_lists"]
    assert obs["WIKI.example"]["safe"] is True  # lists fold case unless case_sensitive
    assert "list: malware-bazaar" in obs["a" * 64]["tags"]  # csv lists match (not in Reflex)
    assert not obs["203.0.113.9"].get("intel_lists")
    assert "list: bad-nets" in e["tags"] and "list: malware-bazaar" in e["tags"]
    # a rule can use the list too
    rule(c, "bad net rule", "observables.value cidr intel('Bad Nets')", add_tags=True,
         tags_to_add=["bad-net"])
    time.sleep(1.5)
    c.ingest([make_event(f"{p}-2", title="More", observables=[
        {"value": "10.9.9.9", "data_type": "ip"}])])
    assert "bad-net" in wait_refs(c, p, 2)[f"{p}-2"]["tags"]


def test_changes_reach_every_worker_within_a_second(servers):
    srv = servers(env={"REFLEX_EVENT_PROCESSOR_WORKER_COUNT": "2"})
    c = srv.client()
    p = new_prefix("fresh")
    r = rule(c, "fresh", f'reference startswith "{p}"', add_tags=True, tags_to_add=["fresh"])
    time.sleep(1.0 * TIME_FACTOR + 0.3)
    # requests go round-robin over the partitions, so both workers get some
    for i in range(8):
        c.ingest([make_event(f"{p}-a{i}", title="Fresh")])
    got = wait_refs(c, p, 8)
    assert all("fresh" in e["tags"] for e in got.values()), got
    delete(c, f"/event_rule/{r['uuid']}")
    time.sleep(1.0 * TIME_FACTOR + 0.3)
    for i in range(8):
        c.ingest([make_event(f"{p}-b{i}", title="Fresh")])
    got = wait_refs(c, p, 16)
    assert not any("fresh" in got[f"{p}-b{i}"]["tags"] for i in range(8))


def test_mute_suppresses_the_signature(server):
    c = server.client()
    rule(c, "mute noisy", 'title = "Noisy"', mute_event=True, mute_period=30)
    time.sleep(1.5)
    p = new_prefix("mute")
    c.ingest([make_event(f"{p}-0", title="Noisy", signature="noisy-sig")])
    first = wait_refs(c, p, 1)[f"{p}-0"]
    assert first["status"]["name"] == "New"
    c.ingest([make_event(f"{p}-{i}", title="Noisy", signature="noisy-sig") for i in range(1, 4)] +
             [make_event(f"{p}-other", title="Noisy", signature="other-sig")])
    got = wait_refs(c, p, 5)
    for i in range(1, 4):
        e = got[f"{p}-{i}"]
        assert e["status"]["name"] == "Dismissed" and e["muted"] is True, e
        assert e["dismiss_reason"] == "Muted"
    # another signature is not muted (it hits the rule and mutes its own)
    assert got[f"{p}-other"]["status"]["name"] == "New"
    assert c.queue_stats()["events"]["muted"] == 3


def test_set_organization_keeps_exactly_once(server):
    admin = server.client()
    b_uuid, b_key = new_org(server, "soc-b")
    b = server.client(b_key)
    rule(admin, "route to b", 'title = "For B"', global_rule=True, set_organization=True,
         target_organization=b_uuid)
    time.sleep(1.5)
    p = new_prefix("move")
    evs = [make_event(f"{p}-{i}", title="For B") for i in range(5)]
    admin.ingest(evs)
    got = wait_refs(b, p, 5)
    assert {e["organization"] for e in got.values()} == {b_uuid}
    # the same events again: duplicates of the moved ones, not second copies
    admin.ingest(evs)
    wait_for("duplicates counted",
             lambda: admin.queue_stats()["events"]["duplicates"] >= 5, 30)
    assert len(events_by_ref(b, p)) == 5
    assert not events_by_ref(admin, p)


class Feed(http.server.BaseHTTPRequestHandler):
    body = b""

    def do_GET(self):  # noqa: N802 (http.server's naming)
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(Feed.body)))
        self.end_headers()
        self.wfile.write(Feed.body)

    def log_message(self, *args):
        pass


def test_list_polled_from_a_url(servers):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        Feed.body = (b"# a feed\n198.51.100.0/24\n203.0.113.5 ; comment\n\nnot-an-ip\n"
                     b"; another comment\n")
        srv = servers(env={"SLUICE_LIST_POLL_CHECK": "1", "SLUICE_LIST_FETCH_PRIVATE": "true"})
        c = srv.client()
        url = f"http://127.0.0.1:{httpd.server_address[1]}/feed.txt"
        lst = post(c, "/list", {"name": "Feed", "list_type": "values", "data_type": "ip",
                                "url": url, "poll_interval": 60, "tag_on_match": True})

        def polled():
            d = c.get(API + f"/list/{lst['uuid']}").json()
            return d.get("last_polled") and d
        d = wait_for("the first poll", polled, 30)
        assert d["last_poll_status"].startswith("ok: 2 values"), d
        vals = c.get(API + f"/list/{lst['uuid']}/values").json()["values"]
        assert sorted(vals) == ["198.51.100.0/24", "203.0.113.5"]
        time.sleep(1.5)
        p = new_prefix("feed")
        c.ingest([make_event(f"{p}-1", title="x", observables=[
            {"value": "198.51.100.77", "data_type": "ip"}])])
        assert "list: feed" in wait_refs(c, p, 1)[f"{p}-1"]["tags"]
        # the feed changes; asking for a poll fetches it at the next check, not in an hour
        Feed.body = b"198.51.100.0/24\n203.0.113.5\n2001:db8::/32\n"
        r = c.s.post(c.url + API + f"/list/{lst['uuid']}/poll", timeout=60 * TIME_FACTOR)
        assert r.status_code == 200, r.text
        wait_for("the requested poll",
                 lambda: c.get(API + f"/list/{lst['uuid']}").json().get("last_poll_values") == 3,
                 30)
        vals = c.get(API + f"/list/{lst['uuid']}/values").json()["values"]
        assert "2001:db8::/32" in vals
        # a list without a url has nothing to poll
        plain = post(c, "/list", {"name": "Plain", "list_type": "values", "data_type": "ip"})
        r = c.s.post(c.url + API + f"/list/{plain['uuid']}/poll", timeout=60 * TIME_FACTOR)
        assert r.status_code == 409
    finally:
        httpd.shutdown()


def test_feeds_are_not_fetched_from_internal_addresses(servers):
    """A list's url is set by API users: the server must not fetch loopback, private or
    link-local addresses for them (unless the operator allows it)."""
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Feed)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        Feed.body = b"sluice_events_stored_total 0\n"
        srv = servers(env={"SLUICE_LIST_POLL_CHECK": "1"})
        c = srv.client()
        port = httpd.server_address[1]
        lst = post(c, "/list", {"name": "Sneaky", "list_type": "values", "data_type": "generic",
                                "url": f"http://127.0.0.1:{port}/metrics"})

        def polled():
            d = c.get(API + f"/list/{lst['uuid']}").json()
            return d.get("last_polled") and d
        d = wait_for("the poll", polled, 30)
        assert d["last_poll_status"].startswith("error: 127.0.0.1 is a loopback"), d
        assert c.get(API + f"/list/{lst['uuid']}/values").json()["values"] == []
    finally:
        httpd.shutdown()
