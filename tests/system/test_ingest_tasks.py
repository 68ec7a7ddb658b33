"""What became of each event of a bulk request, read back as GET /api/v2.0/task/<task_id>:
stored, duplicate, rejected (by the api or the worker), dismissed or merged into a case by a
rule, muted; counted once even when workers are killed mid-way; scoped to the request's
organization (keys of the default organization see all), and readable by agents."""

import collections
import os
import signal

from sluice_harness import (API, TIME_FACTOR, make_event, new_key, new_org, new_prefix,
                            wait_for)

def post(c, path, body, expect=(200, 201)):
    r = c.s.post(c.url + API + path, json=body, timeout=60 * TIME_FACTOR)
    assert r.status_code in expect, (path, r.status_code, r.text[:500])
    return r.json()


def rule(c, name, query, **actions):
    body = {"name": name, "query": query}
    body.update(actions)
    return post(c, "/event_rule", body)


def close_reason(c, title):
    body = c.get(API + "/close_reason").json()
    items = body if isinstance(body, list) else body["close_reasons"]
    for cr in items:
        if cr["title"] == title:
            return cr["uuid"]
    raise AssertionError(f"no close reason {title}: {body}")


def get_task(c, task_id):
    r = c.get(API + f"/task/{task_id}")
    assert r.status_code == 200, (task_id, r.status_code, r.text[:500])
    return r.json()


def wait_task(c, task_id, timeout=60):
    """Polls the task until it is complete; every answer on the way is a task (never 404),
    pending until done."""
    def probe():
        t = get_task(c, task_id)
        assert t["kind"] == "event_bulk" and t["task_id"] == task_id, t
        if not t["complete"]:
            assert t["state"] == "pending" and t["finished_at"] is None, t
            assert t["counts"]["stored"] is None, t
            return None
        return t
    return wait_for(f"task {task_id} complete", probe, timeout)


def by_index(task):
    rows = {}
    for e in task["events"]:
        assert e["index"] not in rows, f"index {e['index']} twice: {task['events']}"
        rows[e["index"]] = e
    return rows


def event_by_ref(c, ref):
    evs = [e for e in c.list(page_size=1000)["events"] if e["reference"] == ref]
    assert len(evs) == 1, (ref, len(evs))
    return evs[0]


def wait_rules_active(c, p):
    """Sends probe events matching the dismiss rule until one is stored dismissed: from then
    on every worker has the rules (no fixed sleep)."""
    n = [0]

    def probe():
        ref = f"{p}-probe-{n[0]}"
        n[0] += 1
        c.ingest([make_event(ref, title="Dismiss me")])
        e = wait_for(f"probe {ref}", lambda: [x for x in c.list(page_size=1000)["events"]
                                             if x["reference"] == ref], 30)[0]
        return e["status"]["name"] == "Dismissed"
    wait_for("rules loaded by the workers", probe, 30, interval=0.2)


def test_every_outcome_of_a_bulk_request(server):
    c = server.client()
    fp = close_reason(c, "False positive")
    rule(c, "dismiss", 'title = "Dismiss me"', dismiss=True, dismiss_reason=fp,
         dismiss_comment="noise")
    case_rule = rule(c, "case", 'title = "Case me"', create_new_case=True)
    mute_rule = rule(c, "mute noisy", 'title = "Noisy"', mute_event=True, mute_period=600)
    p = new_prefix("tasks")
    wait_rules_active(c, p)

    # Before the request: an event whose reference the request repeats, and the first event of
    # a signature, which hits the mute rule and mutes the signature for the events after it.
    first = c.ingest([make_event(f"{p}-old"),
                      make_event(f"{p}-noisy-0", title="Noisy", signature="noisy-sig")])
    t0 = wait_task(c, first["task_id"])
    assert t0["counts"] == {"stored": 2, "duplicate": 0, "rejected": 0, "dismissed": 0,
                            "merged": 0, "muted": 0}, t0
    assert t0["events"] == [] and t0["accepted"] == 2 and t0["rejected"] == 0, t0

    events = [
        make_event(f"{p}-a"),                                         # 0 stored
        {"title": 5},                                                 # 1 rejected by the api
        make_event(f"{p}-old"),                                       # 2 duplicate (earlier)
        make_event(f"{p}-dismissed", title="Dismiss me"),             # 3 dismissed
        make_event(f"{p}-case", title="Case me"),                     # 4 merged (new case)
        make_event(f"{p}-noisy-1", title="Noisy", signature="noisy-sig"),  # 5 muted
        make_event(f"{p}-a"),                                         # 6 duplicate (of 0)
        make_event(f"{p}-b"),                                         # 7 stored (last in stream)
        make_event(f"{p}-c", ingest_index=3),                         # 8 rejected: internal field
    ]
    r = c.post_bulk(events)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["accepted"] == 7, body
    assert [x["index"] for x in body["rejected"]] == [1, 8], body
    assert "ingest_index" in body["rejected"][1]["error"], body
    task_id = body["task_id"]

    # Known at once, before any worker got to it.
    t = get_task(c, task_id)
    assert t["organization"] and t["accepted"] == 7 and t["rejected"] == 2, t
    t = wait_task(c, task_id)
    assert t["state"] == "done" and t["complete"] is True, t
    assert t["received_at"] and t["finished_at"], t
    assert t["counts"] == {"stored": 2, "duplicate": 2, "rejected": 2, "dismissed": 1,
                           "merged": 1, "muted": 1}, t
    assert sum(t["counts"].values()) == len(events)
    rows = by_index(t)
    assert sorted(rows) == [1, 2, 3, 4, 5, 6, 8], rows  # stored events have no row
    assert [rows[i]["outcome"] for i in sorted(rows)] == [
        "rejected", "duplicate", "dismissed", "merged", "muted", "duplicate", "rejected"]
    assert rows[1]["detail"].startswith("title: expected"), rows[1]
    assert rows[8]["detail"].startswith("ingest_index: internal field"), rows[8]
    old = event_by_ref(c, f"{p}-old")
    assert rows[2]["uuid"] == old["uuid"] and rows[2]["reference"] == f"{p}-old"
    a = event_by_ref(c, f"{p}-a")
    assert rows[6]["uuid"] == a["uuid"] and rows[6]["reference"] == f"{p}-a"
    dismissed = event_by_ref(c, f"{p}-dismissed")
    assert rows[3]["uuid"] == dismissed["uuid"] and dismissed["status"]["name"] == "Dismissed"
    case = event_by_ref(c, f"{p}-case")
    assert rows[4]["uuid"] == case["uuid"] and rows[4]["case"] == case["case"], (rows[4], case)
    assert case["event_rules"] == [case_rule["uuid"]]
    noisy = event_by_ref(c, f"{p}-noisy-1")
    assert rows[5]["uuid"] == noisy["uuid"] and rows[5]["detail"] == mute_rule["uuid"], rows[5]
    assert noisy["muted"] is True

    # Stored documents carry their request and position; the request's end never shows.
    for ref, index in ((f"{p}-a", 0), (f"{p}-b", 7), (f"{p}-case", 4)):
        e = event_by_ref(c, ref)
        assert e["ingest_task"] == task_id and e["ingest_index"] == index, e
        assert "_meta" not in e, e
    # Done stays done: reading again answers the same.
    assert get_task(c, task_id) == t


def test_requests_without_events_in_the_stream(server):
    """A request whose every event is rejected (or that has none) is done at once."""
    c = server.client()
    r = c.post_bulk([{"title": ""}, {"title": "t", "uuid": "x"}])
    assert r.status_code == 200 and r.json()["accepted"] == 0, r.text
    t = get_task(c, r.json()["task_id"])
    assert t["state"] == "done" and t["complete"] is True, t
    assert t["counts"] == {"stored": 0, "duplicate": 0, "rejected": 2, "dismissed": 0,
                           "merged": 0, "muted": 0}, t
    assert [(e["index"], e["outcome"]) for e in t["events"]] == [(0, "rejected"),
                                                               (1, "rejected")]
    r = c.post_bulk([])
    assert r.status_code == 200, r.text
    t = get_task(c, r.json()["task_id"])
    assert t["complete"] is True and t["accepted"] == 0 and t["events"] == [], t
    assert t["counts"]["stored"] == 0


def test_scope_agents_and_other_organizations(server):
    admin = server.client()
    agent = server.client(new_key(server, "default", "agent"))
    b_uuid, b_key = new_org(server, "tasks-b")
    b = server.client(b_key)
    b_agent = server.client(new_key(server, "tasks-b", "agent"))
    p = new_prefix("scope")

    mine = agent.ingest([make_event(f"{p}-0"), make_event(f"{p}-0")])["task_id"]
    t = wait_task(agent, mine)
    assert t["counts"]["stored"] == 1 and t["counts"]["duplicate"] == 1, t
    theirs = b_agent.ingest([make_event(f"{p}-b")])["task_id"]
    assert wait_task(b, theirs)["organization"] == b_uuid

    # another organization's task is not found; the default organization's keys see all
    assert b.get(API + f"/task/{mine}").status_code == 404
    assert b_agent.get(API + f"/task/{mine}").status_code == 404
    assert get_task(admin, theirs)["organization"] == b_uuid
    assert get_task(agent, theirs)["organization"] == b_uuid
    # unknown and malformed ids
    assert admin.get(API + "/task/00000000-0000-4000-8000-000000000000").status_code == 404
    assert admin.get(API + "/task/not-a-uuid").status_code == 404

    # agents read only bulk requests' tasks
    r = admin.s.post(admin.url + API + "/event_rule", json={
        "name": "retro", "query": 'title = "nothing"', "run_retroactively": True,
        "add_tags": True, "tags_to_add": ["x"]}, timeout=60 * TIME_FACTOR)
    assert r.status_code == 201, r.text
    retro = r.json()["retro_task"]
    assert get_task(admin, retro)["kind"] == "retro_apply_event_rule"
    assert agent.get(API + f"/task/{retro}").status_code == 404


def test_default_organization_reads_every_organizations_events(server):
    admin = server.client()
    b_uuid, b_key = new_org(server, "events-b")
    b = server.client(b_key)
    p = new_prefix("orgs")
    admin.ingest([make_event(f"{p}-a")])
    b.ingest([make_event(f"{p}-b{i}") for i in range(3)])
    b.wait_stored(3)
    admin.wait_stored(1)

    listed = admin.list(organization=b_uuid, page_size=100)
    assert {e["reference"] for e in listed["events"]} == {f"{p}-b{i}" for i in range(3)}
    assert listed["pagination"]["total_results"] == 3
    assert admin.list(organization=b_uuid.upper())["pagination"]["total_results"] == 3
    b_event = listed["events"][0]
    r = admin.get_event(b_event["uuid"])
    assert r.status_code == 200 and r.json()["reference"] == b_event["reference"], r.text
    a_event = admin.list()["events"][0]
    assert a_event["reference"] == f"{p}-a"

    # other keys: their own organization only
    assert b.get_event(a_event["uuid"]).status_code == 404
    r = b.get(API + "/event", params={"organization": admin_org(admin)})
    assert r.status_code == 404, r.text
    assert b.list(organization=b_uuid)["pagination"]["total_results"] == 3
    # a malformed or unknown organization
    r = admin.get(API + "/event", params={"organization": "nope"})
    assert r.status_code == 400 and "organization" in r.json()["detail"], r.text
    r = admin.get(API + "/event", params={"organization": "00000000-0000-4000-8000-000000000000"})
    assert r.status_code == 404, r.text


def admin_org(c):
    return c.list()["events"][0]["organization"]


def test_killed_workers_count_nothing_twice(servers):
    """Requests are queued with processing off, then two workers drain them and are killed
    repeatedly: a batch in flight is processed again (and, when a kill lands between the store
    commit and the stream commit, stored and delivered again: tests/unit/test_store_ingest.c
    covers that case deterministically), and every request still reports each event exactly
    once."""
    per, nreq = 200, 100
    srv = servers(env={"REFLEX_EVENT_PROCESSOR_DISABLED": "true"})
    c = srv.client()
    p = new_prefix("crash")
    tasks = []
    for k in range(nreq):
        evs = [make_event(f"{p}-{k}-{i}") for i in range(per - 20)]
        evs += [make_event(f"{p}-{k}-{i}") for i in range(20)]  # repeats within the request
        evs.insert(7, {"title": ""})                              # rejected by the api
        r = c.post_bulk(evs)
        assert r.status_code == 200 and r.json()["accepted"] == per, r.text
        tasks.append(r.json()["task_id"])
    assert get_task(c, tasks[0])["state"] == "pending"
    srv.terminate()

    srv = servers(env={"REFLEX_EVENT_PROCESSOR_WORKER_COUNT": "2",
                       "REFLEX_EVENT_PROCESSOR_WORKER_CHECK_INTERVAL": "1",
                       "REFLEX_EVENT_PROCESSOR_ES_BULK_SIZE": "50"},
                  data_dir=srv.data_dir)
    c = srv.client()
    kills = 0
    while kills < 8:
        qs = c.queue_stats()
        if qs["size"] == 0:
            break
        victims = [w["pid"] for w in qs["workers"] if w["alive"] and srv.owns(w["pid"])]
        if victims and qs["events"]["stored"] > kills * 1000:
            os.kill(victims[kills % len(victims)], signal.SIGKILL)
            kills += 1
            wait_for("a replacement worker", lambda: (lambda q: q["respawns"] >= kills and sum(
                1 for w in q["workers"] if w["alive"]) == 2)(c.queue_stats()), 60)
    assert kills > 0, "the backlog drained before a worker could be killed"
    # (This api did not answer the requests, so it knows a request once a worker recorded
    # something of it; once the backlog is empty every request has ended.)
    wait_for("backlog drained", lambda: c.queue_stats()["size"] == 0, 120)

    want = {"stored": per - 20, "duplicate": 20, "rejected": 1, "dismissed": 0, "merged": 0,
            "muted": 0}
    for task_id in tasks:
        t = get_task(c, task_id)
        assert t["state"] == "done" and t["complete"] is True, t
        assert t["counts"] == want, t
        assert t["accepted"] == per and t["rejected"] == 1, t
        rows = by_index(t)  # fails on an index recorded twice
        assert len(rows) == 21, t
        assert collections.Counter(e["outcome"] for e in t["events"]) == {"duplicate": 20,
                                                                          "rejected": 1}
    assert c.total() == nreq * (per - 20)


def test_a_moved_event_stays_its_senders(server):
    """A rule that moves an event to another organization (and dismisses it there) does not
    hand the sender's request to that organization: the sender reads the outcome, without the
    other organization's details, and the other organization's key gets 404."""
    admin = server.client()
    p = new_prefix("moved")
    b_uuid, b_key = new_org(server, f"{p}-b")
    b = server.client(b_key)
    fp = close_reason(admin, "False positive")
    rule(admin, f"{p}-move", 'title = "Move me"', set_organization=True,
         target_organization=b_uuid, dismiss=True, dismiss_reason=fp)

    def moved():
        ref = f"{p}-m-{moved.n}"
        moved.n += 1
        task = admin.post_bulk([make_event(ref, title="Move me")]).json()["task_id"]
        t = wait_task(admin, task)
        return (task, ref, t) if t["counts"]["dismissed"] == 1 else None
    moved.n = 0
    task, ref, t = wait_for("the move rule loaded", moved, 30, interval=0.2)
    row = by_index(t)[0]
    assert row["outcome"] == "dismissed" and row["reference"] == ref, row
    assert row["case"] is None, row
    assert t["organization"] != b_uuid, t
    assert b.get(API + f"/task/{task}").status_code == 404
    # The event itself now is the other organization's.
    assert [e for e in b.list(page_size=1000)["events"] if e["reference"] == ref]
