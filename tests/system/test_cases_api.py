"""Cases over HTTP: create from events (with and without related events, with a template, with
a generated merge rule the workers then apply), list, read, update, add events, close (events
Closed), reopen (events Open), delete (events New again), comments, case templates, the
organization boundary on every endpoint (another organization's case is 404, never 403), and
the consistency of a case's events and observables while a rule merges a stream of events into
it and the API adds and moves events at the same time."""

import threading
import time

from sluice_harness import (UUID_RE, api_call as call, bad, deadline, make_event, new_key, new_org,
                            new_prefix, ok, scaled, wait_for)


# ---- helpers ----

def all_events(c, **params):
    """Every stored event of c's organization (paged)."""
    out, page = [], 1
    while True:
        body = c.list(page=page, page_size=1000, **params)
        out += body["events"]
        if page >= body["pagination"]["pages"]:
            return out
        page += 1


def stored(c, events, timeout=60):
    """Ingests events and waits until all are stored; returns {reference: stored event}."""
    c.ingest(events)
    refs = {e["reference"] for e in events}

    def probe():
        got = {e["reference"]: e for e in all_events(c) if e["reference"] in refs}
        return got if len(got) == len(refs) else None
    return wait_for(f"{len(refs)} events stored", probe, timeout)


def event(c, uuid):
    r = c.get_event(uuid)
    assert r.status_code == 200, (r.status_code, r.text[:300])
    return r.json()


def ev(ref, sig, **kw):
    """An event with a chosen client signature and one observable of its own."""
    kw.setdefault("observables", [{"value": f"host-{ref}", "data_type": "host"},
                                  {"value": "shared.example", "data_type": "domain"}])
    return make_event(ref, signature=sig, **kw)


def case_events(c, case_uuid):
    """The uuids GET /case/<uuid>/events pages through."""
    out, page = [], 1
    while True:
        body = ok(call(c, "GET", f"/case/{case_uuid}/events", page=page, page_size=1000))
        out += [e["uuid"] for e in body["events"]]
        if page >= body["pagination"]["pages"]:
            assert len(out) == body["pagination"]["total_results"], body["pagination"]
            return out
        page += 1


def reason_uuid(c, title="True positive"):
    body = ok(call(c, "GET", "/close_reason", page_size=1000))
    return next(r["uuid"] for r in body["close_reasons"] if r["title"] == title)


def new_case(c, status=201, **body):
    body.setdefault("title", "A case")
    return ok(call(c, "POST", "/case", body), status)


def ingest_until(c, make, pred, what, timeout=30):
    """A rule reaches the workers within about a second of its change: sends make(0), make(1),
    ... one at a time until a stored one satisfies pred. Returns it and how many were sent."""
    end = deadline(timeout)
    i = 0
    while True:
        e = make(i)
        i += 1
        got = stored(c, [e])[e["reference"]]
        if pred(got):
            return got, i
        assert time.monotonic() < end, f"{what}: no event took effect in {timeout}s"


def ingest_until_merged(c, case_uuid, make, what):
    return ingest_until(c, make, lambda e: e.get("case") == case_uuid, what)[1]


CASE_FIELDS = {"uuid", "organization", "title", "description", "severity", "tlp", "status",
               "closed", "owner", "tags", "tasks", "event_count", "observable_count",
               "created_at", "updated_at", "closed_at", "close_reason", "closure_comment",
               "event_rule", "case_template"}


# ---- create ----

def test_create_from_events_with_and_without_related(server):
    c = server.client()
    p = new_prefix("cr")
    evs = stored(c, [ev(f"{p}-a{i}", f"{p}-sigA") for i in range(3)] +
                 [ev(f"{p}-b{i}", f"{p}-sigB") for i in range(2)] + [ev(f"{p}-c", f"{p}-sigC")])
    a0, a1, b0, b1 = (evs[f"{p}-{k}"]["uuid"] for k in ("a0", "a1", "b0", "b1"))

    # without related events: only the named one joins
    one = new_case(c, title="Only a0", description="d", severity=3, tlp=1, tags=["x", "x", "y"],
                   owner="alice", events=[a0.upper()])
    assert CASE_FIELDS <= set(one), set(one)
    assert UUID_RE.match(one["uuid"]) and one["title"] == "Only a0"
    assert one["status"] == "New" and one["closed"] is False
    assert (one["severity"], one["tlp"], one["owner"]) == (3, 1, "alice")
    assert one["tags"] == ["x", "y"] and one["description"] == "d"
    assert one["event_count"] == 1 and one["event_rule"] is None
    assert one["task"]["complete"] is True and one["task"]["action"] == "add_to_case", one["task"]
    got = event(c, a0)
    assert got["case"] == one["uuid"] and got["status"]["name"] == "Open"
    assert "case" not in event(c, a1) or not event(c, a1)["case"]
    assert event(c, a1)["status"]["name"] == "New"
    assert case_events(c, one["uuid"]) == [a0]

    # with related events: the New events sharing the signature come along
    two = new_case(c, title="B and related", events=[b0], include_related_events=True)
    assert two["event_count"] == 2, two
    assert sorted(case_events(c, two["uuid"])) == sorted([b0, b1])
    assert {event(c, u)["case"] for u in (b0, b1)} == {two["uuid"]}
    # defaults
    assert (two["severity"], two["tlp"], two["owner"], two["tags"]) == (1, 2, "", [])

    # a case without events
    empty = new_case(c, title="Empty")
    assert empty["event_count"] == 0 and empty["task"] is None

    # reading and listing
    got = ok(call(c, "GET", f"/case/{one['uuid']}"))
    assert got["uuid"] == one["uuid"] and got["event_count"] == 1
    assert got["observable_count"] == 2, got
    listed = ok(call(c, "GET", "/case"))
    assert listed["pagination"]["total_results"] == 3
    assert {x["uuid"] for x in listed["cases"]} == {one["uuid"], two["uuid"], empty["uuid"]}
    assert [x["uuid"] for x in ok(call(c, "GET", "/case", title="and REL"))["cases"]] == \
        [two["uuid"]]
    assert [x["uuid"] for x in ok(call(c, "GET", "/case", owner="alice"))["cases"]] == \
        [one["uuid"]]
    assert [x["uuid"] for x in ok(call(c, "GET", "/case", tag="y"))["cases"]] == [one["uuid"]]
    assert [x["uuid"] for x in ok(call(c, "GET", "/case", severity=3))["cases"]] == [one["uuid"]]
    assert ok(call(c, "GET", "/case", status="Closed"))["cases"] == []
    paged = ok(call(c, "GET", "/case", page=2, page_size=2))
    assert len(paged["cases"]) == 1 and paged["pagination"]["pages"] == 2
    for params, name in (({"page": 0}, "page"), ({"page_size": 1001}, "page_size"),
                         ({"severity": 5}, "severity")):
        r = call(c, "GET", "/case", **params)
        assert r.status_code == 400 and name in r.json()["detail"], r.text


def test_create_refuses_bad_input_and_creates_nothing(server):
    c = server.client()
    p = new_prefix("bad")
    u = stored(c, [ev(f"{p}-0", "s")])[f"{p}-0"]["uuid"]
    bad(call(c, "POST", "/case", {}), "title")
    bad(call(c, "POST", "/case", {"title": ""}), "title")
    bad(call(c, "POST", "/case", {"title": "x", "severity": 5}), "severity")
    bad(call(c, "POST", "/case", {"title": "x", "tlp": -1}), "tlp")
    bad(call(c, "POST", "/case", {"title": "x", "tags": "a"}), "tags")
    bad(call(c, "POST", "/case", {"title": "x", "events": u}), "events")
    bad(call(c, "POST", "/case", {"title": "x", "events": [u, "nope"]}), "events[1]")
    bad(call(c, "POST", "/case", {"title": "x", "events": [u], "include_related_events": 1}),
        "include_related_events")
    bad(call(c, "POST", "/case", {"title": "x", "case_template_uuid": "t"}),
        "case_template_uuid")
    bad(call(c, "POST", "/case", {"title": "x",
                                  "case_template_uuid": "00000000-0000-4000-8000-000000000000"}),
        "case_template_uuid")
    bad(call(c, "POST", "/case", {"title": "x", "generate_event_rule": True}),
        "generate_event_rule")
    body = bad(call(c, "POST", "/case", {"title": "x", "evnets": [u]}), "evnets")
    assert "unknown field" in body["error"], body
    bad(call(c, "POST", "/case", {"title": "x", "event_count": 3}), "event_count")
    r = call(c, "POST", "/case", raw='{"title": ')
    assert r.status_code == 400 and r.json()["error"] == "malformed JSON", r.text
    # an event that is not the organization's: 404 naming it, and no case
    missing = "11111111-2222-4333-8444-555555555555"
    r = call(c, "POST", "/case", {"title": "x", "events": [u, missing],
                                  "generate_event_rule": True})
    assert r.status_code == 404 and missing in r.json()["detail"], r.text
    assert ok(call(c, "GET", "/case"))["pagination"]["total_results"] == 0
    assert ok(call(c, "GET", "/event_rule"))["pagination"]["total_results"] == 0
    assert event(c, u)["status"]["name"] == "New"
    # agents may not touch cases
    agent = server.client(new_key(server, "default", "agent"))
    assert call(agent, "GET", "/case").status_code == 403
    assert call(agent, "POST", "/case", {"title": "x"}).status_code == 403


# ---- templates ----

def test_case_templates_crud_and_applied(server):
    c = server.client()
    tmpl = ok(call(c, "POST", "/case_template", {
        "title": "Phishing", "description": "mail triage", "tags": ["phish"], "severity": 3,
        "tlp": 1, "tasks": [{"title": "Pull the mail", "description": "from the gateway"},
                            {"title": "Block the sender"}]}), 201)
    assert UUID_RE.match(tmpl["uuid"]) and tmpl["title"] == "Phishing"
    assert tmpl["tasks"] == [{"title": "Pull the mail", "description": "from the gateway"},
                             {"title": "Block the sender", "description": ""}]
    assert ok(call(c, "GET", f"/case_template/{tmpl['uuid']}")) == tmpl
    listed = ok(call(c, "GET", "/case_template"))
    assert [t["uuid"] for t in listed["case_templates"]] == [tmpl["uuid"]]
    dflt = ok(call(c, "POST", "/case_template", {"title": "Bare"}), 201)
    assert (dflt["severity"], dflt["tlp"], dflt["tags"], dflt["tasks"]) == (1, 2, [], [])

    # validation
    r = call(c, "POST", "/case_template", {"title": "Phishing"})
    assert r.status_code == 409 and "Phishing" in r.json()["detail"], r.text
    bad(call(c, "POST", "/case_template", {}), "title")
    bad(call(c, "POST", "/case_template", {"title": "t", "severity": 7}), "severity")
    bad(call(c, "POST", "/case_template", {"title": "t", "tlp": "red"}), "tlp")
    bad(call(c, "POST", "/case_template", {"title": "t", "tasks": {"title": "a"}}), "tasks")
    bad(call(c, "POST", "/case_template", {"title": "t", "tasks": [{"description": "a"}]}),
        "tasks")
    bad(call(c, "POST", "/case_template", {"title": "t", "tasks": [{"title": ""}]}), "tasks")
    bad(call(c, "POST", "/case_template", {"title": "t", "tasks": ["a"]}), "tasks")
    body = bad(call(c, "POST", "/case_template",
                    {"title": "t", "tasks": [{"title": "a"}, {"title": "b", "owner": "x"}]}),
               "tasks")
    assert "tasks[1]" in body["error"] and "owner" in body["error"], body
    body = bad(call(c, "POST", "/case_template",
                    {"title": "t", "tasks": [{"title": f"t{i}"} for i in range(101)]}), "tasks")
    assert "100" in body["error"], body
    ok(call(c, "POST", "/case_template",
            {"title": "hundred", "tasks": [{"title": f"t{i}"} for i in range(100)]}), 201)

    # partial update
    upd = ok(call(c, "PUT", f"/case_template/{tmpl['uuid']}", {"severity": 4}))
    assert upd["severity"] == 4 and upd["tasks"] == tmpl["tasks"] and upd["tags"] == ["phish"]

    # a case takes the template's tags (added), tasks, severity and tlp (unless it gives them)
    case = new_case(c, title="Mail from the CEO", tags=["mine"],
                    case_template_uuid=tmpl["uuid"].upper())
    assert case["case_template"] == tmpl["uuid"], case
    assert sorted(case["tags"]) == ["mine", "phish"]
    assert (case["severity"], case["tlp"]) == (4, 1)
    assert [t["title"] for t in case["tasks"]] == ["Pull the mail", "Block the sender"]
    assert [t["description"] for t in case["tasks"]] == ["from the gateway", ""]
    own = new_case(c, title="Low", severity=0, case_template_uuid=tmpl["uuid"])
    assert (own["severity"], own["tlp"]) == (0, 1), own

    # analysts read templates but do not change them
    analyst = server.client(new_key(server, "default", "analyst"))
    assert call(analyst, "GET", "/case_template").status_code == 200
    assert call(analyst, "POST", "/case_template", {"title": "z"}).status_code == 403

    # event rules may create cases from a template; a template a rule uses cannot go
    bad(call(c, "POST", "/event_rule", {"name": "r", "query": "title exists",
                                        "create_new_case": True,
                                        "case_template": "00000000-0000-4000-8000-000000000000"}),
        "case_template")
    bad(call(c, "POST", "/event_rule", {"name": "r", "query": "title exists",
                                        "create_new_case": True, "case_template": "x"}),
        "case_template")
    rule = ok(call(c, "POST", "/event_rule", {"name": "phish rule", "query": 'title = "Phish"',
                                              "create_new_case": True,
                                              "case_template": tmpl["uuid"]}), 201)
    assert rule["case_template"] == tmpl["uuid"]
    r = call(c, "DELETE", f"/case_template/{tmpl['uuid']}")
    assert r.status_code == 409 and "phish rule" in r.json()["detail"], r.text

    # the worker's case takes the template too
    p = new_prefix("tp")
    got, _ = ingest_until(c, lambda i: make_event(f"{p}-{i}", title="Phish"),
                          lambda e: e.get("case"), "create_new_case rule")
    made = ok(call(c, "GET", f"/case/{got['case']}"))
    assert made["case_template"] == tmpl["uuid"] and "phish" in made["tags"], made
    assert [t["title"] for t in made["tasks"]] == ["Pull the mail", "Block the sender"]
    assert made["event_rule"] == rule["uuid"]

    ok(call(c, "DELETE", f"/event_rule/{rule['uuid']}"))
    assert ok(call(c, "DELETE", f"/case_template/{tmpl['uuid']}")) == \
        {"uuid": tmpl["uuid"], "deleted": True}
    assert call(c, "GET", f"/case_template/{tmpl['uuid']}").status_code == 404


# ---- generated event rule ----

def test_generate_event_rule_merges_later_events(server):
    c = server.client()
    p = new_prefix("gen")
    evs = stored(c, [ev(f"{p}-x0", f"{p}-X"), ev(f"{p}-x1", f"{p}-X"), ev(f"{p}-y0", f"{p}-Y")])
    x0, y0 = evs[f"{p}-x0"], evs[f"{p}-y0"]
    case = new_case(c, title="Beaconing", events=[x0["uuid"], y0["uuid"]],
                    generate_event_rule=True)
    assert case["event_count"] == 2 and UUID_RE.match(case["event_rule"]), case
    rule = ok(call(c, "GET", f"/event_rule/{case['event_rule']}"))
    assert rule["name"] == "Merge into case Beaconing"
    assert rule["query"] in (f'signature in ["{x0["signature"]}","{y0["signature"]}"]',
                             f'signature in ["{y0["signature"]}","{x0["signature"]}"]'), rule
    assert rule["merge_into_case"] is True and rule["target_case_uuid"] == case["uuid"]
    assert rule["active"] is True and rule["expire"] is False and rule["dismiss"] is False
    assert rule["organization"] == case["organization"]
    # the related event that was not named stays out (include_related_events false)
    assert event(c, evs[f"{p}-x1"]["uuid"]).get("case") in (None, "")

    # a second case of the same title gets a rule name of its own
    z = stored(c, [ev(f"{p}-z0", f"{p}-Z")])[f"{p}-z0"]
    again = new_case(c, title="Beaconing", events=[z["uuid"]], generate_event_rule=True)
    assert ok(call(c, "GET", f"/event_rule/{again['event_rule']}"))["name"] == \
        "Merge into case Beaconing (2)"

    # new events of the pattern arrive and the workers merge them into the case
    sent = ingest_until_merged(c, case["uuid"], lambda i: ev(f"{p}-new{i}", f"{p}-Y"),
                               "generated rule")
    more = stored(c, [ev(f"{p}-late{i}", f"{p}-X") for i in range(3)])
    for e in more.values():
        assert e["case"] == case["uuid"] and e["status"]["name"] == "Open", e
    got = ok(call(c, "GET", f"/case/{case['uuid']}"))
    assert got["event_count"] == 2 + 1 + 3, (got["event_count"], sent)
    # an event of another pattern does not join
    other = stored(c, [ev(f"{p}-other", f"{p}-W")])[f"{p}-other"]
    assert not other.get("case")


# ---- add, update, close, reopen, comments, delete ----

def test_case_lifecycle(server):
    c = server.client()
    p = new_prefix("life")
    evs = stored(c, [ev(f"{p}-a{i}", f"{p}-A") for i in range(3)] +
                 [ev(f"{p}-b{i}", f"{p}-B") for i in range(2)])
    a = [evs[f"{p}-a{i}"]["uuid"] for i in range(3)]
    b = [evs[f"{p}-b{i}"]["uuid"] for i in range(2)]
    case = new_case(c, title="Life")
    u = case["uuid"]

    # add_events: related events come along by default
    r = call(c, "PUT", f"/case/{u}/add_events", {"events": [a[0]]})
    assert r.status_code == 200, r.text
    added = r.json()
    assert added["case"]["uuid"] == u and added["case"]["event_count"] == 3, added
    assert sorted(case_events(c, u)) == sorted(a)
    added = ok(call(c, "PUT", f"/case/{u}/add_events",
                    {"events": [b[0]], "include_related_events": False}))
    assert added["case"]["event_count"] == 4
    assert not event(c, b[1]).get("case")
    bad(call(c, "PUT", f"/case/{u}/add_events", {}), "events")
    bad(call(c, "PUT", f"/case/{u}/add_events", {"events": []}), "events")
    bad(call(c, "PUT", f"/case/{u}/add_events", {"events": ["x"]}), "events[0]")
    r = call(c, "PUT", f"/case/{u}/add_events",
             {"events": ["11111111-2222-4333-8444-555555555555"]})
    assert r.status_code == 404 and "11111111-2222-4333-8444-555555555555" in r.text, r.text

    # update: partial
    upd = ok(call(c, "PUT", f"/case/{u}", {"title": "Life 2", "severity": 4, "tlp": 3,
                                           "owner": "bob", "tags": ["t"],
                                           "status": "In Progress"}))
    assert (upd["title"], upd["severity"], upd["tlp"], upd["owner"], upd["tags"],
            upd["status"]) == ("Life 2", 4, 3, "bob", ["t"], "In Progress"), upd
    upd = ok(call(c, "PUT", f"/case/{u}", {"description": "more"}))
    assert upd["description"] == "more" and upd["title"] == "Life 2" and upd["event_count"] == 4
    assert ok(call(c, "PUT", f"/case/{u}", {"status": "hold"}))["status"] == "Hold"
    bad(call(c, "PUT", f"/case/{u}", {"status": "Closed"}), "status")
    bad(call(c, "PUT", f"/case/{u}", {"status": "Done"}), "status")
    bad(call(c, "PUT", f"/case/{u}", {"severity": 9}), "severity")
    bad(call(c, "PUT", f"/case/{u}", {"title": None}), "title")
    bad(call(c, "PUT", f"/case/{u}", {"event_count": 1}), "event_count")
    bad(call(c, "PUT", f"/case/{u}", {"closed": True}), "closed")

    # close: its events become Closed
    bad(call(c, "PUT", f"/case/{u}/close", {}), "close_reason_uuid")
    bad(call(c, "PUT", f"/case/{u}/close", {"close_reason_uuid": "nope"}), "close_reason_uuid")
    bad(call(c, "PUT", f"/case/{u}/close",
             {"close_reason_uuid": "11111111-2222-4333-8444-555555555555"}), "close_reason_uuid")
    _, other_key = new_org(server, "life-other")
    other_reason = reason_uuid(server.client(other_key))
    bad(call(c, "PUT", f"/case/{u}/close", {"close_reason_uuid": other_reason}),
        "close_reason_uuid")
    reason = reason_uuid(c)
    closed = ok(call(c, "PUT", f"/case/{u}/close", {"close_reason_uuid": reason,
                                                    "comment": "done and dusted"}))
    assert closed["status"] == "Closed" and closed["closed"] is True, closed
    assert closed["events_closed"] == 4 and closed["closed_at"]
    assert closed["closure_comment"] == "done and dusted"
    for x in a + [b[0]]:
        assert event(c, x)["status"]["name"] == "Closed"
    assert event(c, b[1])["status"]["name"] == "New"
    r = call(c, "PUT", f"/case/{u}/close", {"close_reason_uuid": reason})
    assert r.status_code == 409 and "already closed" in r.text, r.text
    r = call(c, "PUT", f"/case/{u}", {"status": "New"})
    assert r.status_code == 409, r.text
    assert ok(call(c, "GET", "/case", status="Closed"))["cases"][0]["uuid"] == u
    # an event added to a closed case is Closed too
    ok(call(c, "PUT", f"/case/{u}/add_events", {"events": [b[1]]}))
    assert event(c, b[1])["status"]["name"] == "Closed"

    # reopen (no body at all): its events are Open again
    r = c.s.put(c.url + f"/api/v2.0/case/{u}/reopen")
    assert r.status_code == 200, r.text
    reopened = r.json()
    assert reopened["closed"] is False and reopened["status"] != "Closed"
    assert reopened["events_reopened"] == 5
    for x in a + b:
        assert event(c, x)["status"]["name"] == "Open"
    r = call(c, "PUT", f"/case/{u}/reopen", {})
    assert r.status_code == 409 and "not closed" in r.text, r.text
    bad(call(c, "PUT", f"/case/{u}/reopen", {"status": "New"}), "status")

    # comments
    c1 = ok(call(c, "POST", f"/case/{u}/comments", {"text": "first"}), 201)
    c2 = ok(call(c, "POST", f"/case/{u}/comments", {"text": "second\nline"}), 201)
    assert UUID_RE.match(c1["uuid"]) and c1["text"] == "first" and c1["case"] == u
    assert {"author", "created_at"} <= set(c1), c1
    bad(call(c, "POST", f"/case/{u}/comments", {}), "text")
    bad(call(c, "POST", f"/case/{u}/comments", {"text": ""}), "text")
    bad(call(c, "POST", f"/case/{u}/comments", {"text": "x", "by": "me"}), "by")
    listed = ok(call(c, "GET", f"/case/{u}/comments"))["comments"]
    assert [x["text"] for x in listed] == ["first", "second\nline"]
    assert ok(call(c, "DELETE", f"/case/{u}/comments/{c1['uuid']}")) == \
        {"uuid": c1["uuid"], "deleted": True}
    assert call(c, "DELETE", f"/case/{u}/comments/{c1['uuid']}").status_code == 404
    assert call(c, "DELETE", f"/case/{u}/comments/not-a-uuid").status_code == 404
    assert [x["uuid"] for x in ok(call(c, "GET", f"/case/{u}/comments"))["comments"]] == \
        [c2["uuid"]]

    # observables: the distinct (value, data_type) of its events, with event counts
    obs = ok(call(c, "GET", f"/case/{u}/observables"))
    by = {(o["value"], o["data_type"]): o["events"] for o in obs["observables"]}
    assert by[("shared.example", "domain")] == 5
    assert by[(f"host-{p}-a0", "host")] == 1 and len(by) == 6, by
    assert ok(call(c, "GET", f"/case/{u}"))["observable_count"] == 6
    r = call(c, "GET", f"/case/{u}/observables", limit=0)
    assert r.status_code == 400, r.text

    # delete: admins only; its events go back to New without a case
    analyst = server.client(new_key(server, "default", "analyst"))
    assert call(analyst, "DELETE", f"/case/{u}").status_code == 403
    assert call(analyst, "GET", f"/case/{u}").status_code == 200
    gone = ok(call(c, "DELETE", f"/case/{u}"))
    assert gone == {"uuid": u, "deleted": True, "events_released": 5}, gone
    for x in a + b:
        e = event(c, x)
        assert e["status"]["name"] == "New" and not e.get("case"), e
    for method, path in (("GET", ""), ("DELETE", ""), ("GET", "/events"),
                         ("GET", "/comments"), ("PUT", "/reopen")):
        assert call(c, method, f"/case/{u}{path}", {} if method == "PUT" else None) \
            .status_code == 404


# ---- organizations ----

def test_organization_boundary_on_every_endpoint(server):
    a = server.client()  # the default organization's admin
    b_org, b_key = new_org(server, "cases-b")
    b = server.client(b_key)
    p = new_prefix("org")
    a_ev = stored(a, [ev(f"{p}-a", f"{p}-S")])[f"{p}-a"]["uuid"]
    b_ev = stored(b, [ev(f"{p}-b", f"{p}-S")])[f"{p}-b"]["uuid"]
    a_case = new_case(a, title="A's", events=[a_ev])
    b_case = new_case(b, title="B's", events=[b_ev])
    assert b_case["organization"] == b_org and a_case["organization"] != b_org
    ua = a_case["uuid"]
    comment = ok(call(a, "POST", f"/case/{ua}/comments", {"text": "secret"}), 201)
    reason = reason_uuid(b)

    # every endpoint answers another organization's case like a missing one: 404
    calls = [("GET", f"/case/{ua}", None), ("PUT", f"/case/{ua}", {"title": "mine"}),
             ("DELETE", f"/case/{ua}", None),
             ("PUT", f"/case/{ua}/add_events", {"events": [b_ev]}),
             ("PUT", f"/case/{ua}/close", {"close_reason_uuid": reason}),
             ("PUT", f"/case/{ua}/reopen", {}), ("GET", f"/case/{ua}/events", None),
             ("GET", f"/case/{ua}/observables", None), ("GET", f"/case/{ua}/comments", None),
             ("POST", f"/case/{ua}/comments", {"text": "hi"}),
             ("DELETE", f"/case/{ua}/comments/{comment['uuid']}", None)]
    missing = "11111111-2222-4333-8444-555555555555"
    for method, path, body in calls:
        for target in (path, path.replace(ua, missing), path.replace(ua, "not-a-uuid")):
            r = call(b, method, target, body)
            assert r.status_code == 404, (method, target, r.status_code, r.text)
            assert r.json()["error"] == "not found", r.text
    # nothing changed
    got = ok(call(a, "GET", f"/case/{ua}"))
    assert got["title"] == "A's" and got["event_count"] == 1 and got["closed"] is False
    assert len(ok(call(a, "GET", f"/case/{ua}/comments"))["comments"]) == 1
    assert event(b, b_ev)["case"] == b_case["uuid"]

    # B lists only its own cases; another organization's events are "not found"
    assert [x["uuid"] for x in ok(call(b, "GET", "/case"))["cases"]] == [b_case["uuid"]]
    r = call(b, "POST", "/case", {"title": "steal", "events": [a_ev]})
    assert r.status_code == 404 and a_ev in r.text, r.text
    r = call(b, "PUT", f"/case/{b_case['uuid']}/add_events", {"events": [a_ev]})
    assert r.status_code == 404 and a_ev in r.text, r.text
    assert [x["uuid"] for x in ok(call(b, "GET", "/case"))["cases"]] == [b_case["uuid"]]
    r = call(b, "GET", "/case", organization=a_case["organization"])
    assert r.status_code == 400, r.text

    # the default organization sees every organization's cases, or one it names
    assert {x["uuid"] for x in ok(call(a, "GET", "/case"))["cases"]} == {ua, b_case["uuid"]}
    assert [x["uuid"] for x in ok(call(a, "GET", "/case", organization=b_org))["cases"]] == \
        [b_case["uuid"]]
    assert ok(call(a, "GET", f"/case/{b_case['uuid']}"))["organization"] == b_org
    assert call(a, "GET", f"/case/{ua}", organization=b_org).status_code == 404
    # events still must be of the case's organization
    r = call(a, "PUT", f"/case/{b_case['uuid']}/add_events", {"events": [a_ev]})
    assert r.status_code == 404 and a_ev in r.text, r.text
    # and it may create a case in another organization
    made = new_case(a, title="For B", organization=b_org, events=[b_ev])
    assert made["organization"] == b_org and made["event_count"] == 1
    assert event(b, b_ev)["case"] == made["uuid"]
    assert ok(call(b, "GET", f"/case/{made['uuid']}"))["title"] == "For B"


# ---- consistency under concurrent merges ----

def test_case_events_stay_consistent_under_concurrent_merges(server):
    c = server.client()
    p = new_prefix("cc")
    case_c = new_case(c, title="Stream target")["uuid"]
    case_d = new_case(c, title="Other case")["uuid"]
    ok(call(c, "POST", "/event_rule", {"name": "stream into C", "query": 'tags contains "burst"',
                                       "merge_into_case": True, "target_case_uuid": case_c}),
       201)
    probes = ingest_until_merged(c, case_c, lambda i: ev(f"{p}-probe{i}", f"{p}-probe{i}",
                                                          tags=["burst"]), "merge rule")

    # events stored before a rule exists: a retroactive rule task merges them into D
    late = stored(c, [ev(f"{p}-late{i}", f"{p}-late{i}", tags=["late"]) for i in range(30)])
    n_stream, batch = scaled(600, 100), 50
    errors = []

    def stream():
        s = server.client()
        try:
            for first in range(0, n_stream, batch):
                s.ingest([ev(f"{p}-burst{i}", f"{p}-burst{i}", tags=["burst"],
                             observables=[{"value": f"10.9.{i % 7}.1", "data_type": "ip"},
                                          {"value": f"u{i}", "data_type": "user"}])
                          for i in range(first, min(first + batch, n_stream))])
        except AssertionError as e:  # reported by the main thread
            errors.append(e)

    manual_c, manual_d, moved = [], [], []

    def api_merges():
        s = server.client()
        try:
            for k in range(10):
                got = stored(s, [ev(f"{p}-man{k}-{j}", f"{p}-man{k}-{j}", tags=["manual"])
                                 for j in range(5)])
                uuids = [e["uuid"] for e in got.values()]
                target = case_c if k % 2 == 0 else case_d
                ok(call(s, "PUT", f"/case/{target}/add_events",
                        {"events": uuids, "include_related_events": False}))
                (manual_c if target == case_c else manual_d).extend(uuids)
                # move a few events the rule merged into C over to D
                in_c = ok(call(s, "GET", f"/case/{case_c}/events", page_size=1000))["events"]
                burst = [e["uuid"] for e in in_c if "burst" in e.get("tags", [])
                         and e["uuid"] not in moved][:3]
                if burst:
                    ok(call(s, "PUT", f"/case/{case_d}/add_events",
                            {"events": burst, "include_related_events": False}))
                    moved.extend(burst)
        except AssertionError as e:
            errors.append(e)

    threads = [threading.Thread(target=stream), threading.Thread(target=api_merges)]
    for t in threads:
        t.start()
    retro = ok(call(c, "POST", "/event_rule", {
        "name": "late into D", "query": 'tags contains "late"', "merge_into_case": True,
        "target_case_uuid": case_d, "run_retroactively": True}), 201)
    for t in threads:
        t.join(600)
        assert not t.is_alive()
    assert not errors, errors
    wait_for("retro task", lambda: ok(call(c, "GET", f"/task/{retro['retro_task']}"))
             .get("complete"), 120)
    total = probes + len(late) + n_stream + 50
    c.wait_stored(total, timeout=120)

    events = all_events(c)
    assert len(events) == total
    by_case = {}
    for e in events:
        if e.get("case"):
            by_case.setdefault(e["case"], set()).add(e["uuid"])
    assert set(by_case) <= {case_c, case_d}, set(by_case)
    assert moved, "no event was moved between cases"
    for u in manual_c:
        assert u in by_case[case_c]
    for u in manual_d + moved + [e["uuid"] for e in late.values()]:
        assert u in by_case[case_d]
    burst = [e for e in events if e["reference"].startswith(f"{p}-burst")]
    assert len(burst) == n_stream
    for e in burst:
        want = case_d if e["uuid"] in moved else case_c
        assert e["case"] == want and e["status"]["name"] == "Open", e
    for case_uuid in (case_c, case_d):
        doc = ok(call(c, "GET", f"/case/{case_uuid}"))
        members = by_case[case_uuid]
        assert doc["event_count"] == len(members), (case_uuid, doc["event_count"], len(members))
        assert set(case_events(c, case_uuid)) == members
        # observables: the distinct (value, data_type) of exactly its events
        want = {}
        for e in events:
            if e["uuid"] in members:
                for key in {(o["value"], o["data_type"]) for o in e.get("observables", [])}:
                    want[key] = want.get(key, 0) + 1
        got = ok(call(c, "GET", f"/case/{case_uuid}/observables", limit=10000))["observables"]
        assert {(o["value"], o["data_type"]): o["events"] for o in got} == want
        assert doc["observable_count"] == len(want)


def test_large_selection_finishes_in_worker(server):
    """More events than the api adds before answering: the case is created at once (201) and
    worker 0 finishes the add-events task, which GET /task follows to the end."""
    c = server.client()
    p = new_prefix("big")
    n = 2300  # over SL_ACTION_INLINE_MAX (2000)
    for first in range(0, n, 500):
        c.ingest([ev(f"{p}-{i}", f"{p}-same", observables=[{"value": f"h{i % 10}",
                                                               "data_type": "host"}])
                  for i in range(first, min(first + 500, n))])
    c.wait_stored(n, timeout=120)
    one = c.list(page_size=1)["events"][0]["uuid"]
    r = call(c, "POST", "/case", {"title": "Big", "events": [one],
                                  "include_related_events": True})
    assert r.status_code == 201, r.text
    case = r.json()
    task = case["task"]
    assert task["action"] == "add_to_case" and UUID_RE.match(task["task_id"]), task
    assert task["complete"] is False and task["seen"] <= 2000, task
    assert task["task"] == f"/api/v2.0/task/{task['task_id']}", task
    assert r.headers["Location"] == task["task"]

    def done():
        t = ok(call(c, "GET", f"/task/{task['task_id']}"))
        assert t.get("state") != "failed", t
        return t.get("complete") and t
    wait_for("add-events task", done, 120)
    got = ok(call(c, "GET", f"/case/{case['uuid']}"))
    assert got["event_count"] == n and got["observable_count"] == 10, got
    assert c.total(status="Open") == n
    assert len(case_events(c, case["uuid"])) == n
