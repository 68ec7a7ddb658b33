"""Organization isolation and deduplication by (organization, reference)."""

import json

from sluice_harness import (make_event, make_events, metric, new_key, new_org, new_prefix,
                            parse_metrics, run_cli, wait_for)




def test_org_isolation(server):
    a = server.client()
    b_uuid, b_key = new_org(server, "tenant-b")
    b = server.client(b_key)
    p = new_prefix("iso")
    # the same references in both orgs, told apart by title and observable
    a.ingest(make_events(p, 20, title="Alert of A", observables=[
        {"value": "10.0.0.1", "data_type": "auto"}]))
    b.ingest(make_events(p, 20, title="Alert of B", observables=[
        {"value": "10.0.0.2", "data_type": "auto"}]))
    b.ingest(make_events(p, 5, start=20, title="Alert of B"))
    a.wait_stored(20)
    b.wait_stored(25)

    ea = a.list(page_size=100)["events"]
    eb = b.list(page_size=100)["events"]
    assert {e["title"] for e in ea} == {"Alert of A"}
    assert {e["title"] for e in eb} == {"Alert of B"}
    assert {e["organization"] for e in eb} == {b_uuid}
    a_org = {e["organization"] for e in ea}
    assert len(a_org) == 1 and a_org != {b_uuid}
    assert {e["reference"] for e in ea} == {f"{p}-{i}" for i in range(20)}
    assert {e["reference"] for e in eb} == {f"{p}-{i}" for i in range(25)}
    ua = {e["uuid"] for e in ea}
    ub = {e["uuid"] for e in eb}
    assert not ua & ub, "the same reference in two orgs must give two events"
    # signatures are organization-scoped
    assert not {e["signature"] for e in ea} & {e["signature"] for e in eb}

    for u in list(ub)[:5]:
        # a is the default organization, whose keys read every organization's events
        assert a.get_event(u).status_code == 200
        assert b.get_event(u).status_code == 200
    for u in list(ua)[:5]:
        assert b.get_event(u).status_code == 404
    # filters never reach into the other org
    assert a.total(observable="10.0.0.2") == 0
    assert b.total(observable="10.0.0.1") == 0
    assert a.total(title="Alert of B") == 0
    assert b.total(signature=ea[0]["signature"]) == 0

    # an analyst of B sees B only
    _, b_analyst = ("tenant-b", new_key(server, "tenant-b", "analyst"))
    assert server.client(b_analyst).total() == 25

    qa, qb = a.queue_stats(), b.queue_stats()
    assert qa["events"]["duplicates"] == 0 and qb["events"]["duplicates"] == 0




def test_duplicates(server):
    c = server.client()
    p = new_prefix("dup")
    batch = make_events(p, 300)
    c.ingest(batch)
    c.wait_stored(300)
    first = {e["reference"]: e for e in c.list(page_size=1000)["events"]}
    qs0 = c.queue_stats()["events"]
    assert qs0["stored"] == 300 and qs0["duplicates"] == 0, qs0

    # the same batch again, then the same references with new contents
    c.ingest(batch)
    changed = [dict(e, title="Changed title", severity=1) for e in batch[:50]]
    c.ingest(changed)
    wait_for("350 duplicates counted",
             lambda: (lambda q: q["size"] == 0 and q["events"]["duplicates"] == 350)(
                 c.queue_stats()), 60)
    qs1 = c.queue_stats()["events"]
    assert qs1["stored"] == 300, qs1
    assert qs1["accepted"] == 650, qs1
    assert c.total() == 300
    assert c.total(title="Changed title") == 0, "a duplicate must not overwrite the stored event"
    again = {e["reference"]: e for e in c.list(page_size=1000)["events"]}
    assert {r: e["uuid"] for r, e in again.items()} == {r: e["uuid"] for r, e in first.items()}

    # duplicates inside one request: one stored
    one = make_event(f"{p}-inner")
    c.ingest([one, dict(one), dict(one, title="second copy")])
    c.wait_stored(301)
    assert c.total(title="second copy") == 0
    wait_for("352 duplicates", lambda: c.queue_stats()["events"]["duplicates"] == 352, 30)

    # a new reference mixed with old ones stores only the new one
    c.ingest(batch[:10] + [make_event(f"{p}-new")])
    c.wait_stored(302)
    m = parse_metrics(c.get("/metrics").text)
    assert metric(m, "sluice_events_stored_total") == 302
    wait_for("362 duplicates", lambda: c.queue_stats()["events"]["duplicates"] == 362, 30)
