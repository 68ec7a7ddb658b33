"""Retroactive application of an event rule to stored New events, as a task with progress."""

import json

from sluice_harness import API, TIME_FACTOR, make_event, new_org, new_prefix, wait_for




def wait_task(c, task_id, timeout=60):
    def done():
        t = c.get(API + f"/task/{task_id}").json()
        return t if t["complete"] else None
    return wait_for(f"task {task_id}", done, timeout)


def test_retro_task_applies_the_rule_to_stored_events(server):
    a = server.client()
    _, b_key = new_org(server, "retro-b")
    b = server.client(b_key)
    p = new_prefix("retro")
    old = [make_event(f"{p}-old-{i}", title="Old scan") for i in range(120)]
    other = [make_event(f"{p}-other-{i}", title="Something else") for i in range(80)]
    for i in range(0, 200, 50):
        a.ingest((old + other)[i:i + 50])
    b.ingest([make_event(f"{p}-b-{i}", title="Old scan") for i in range(30)])
    a.wait_stored(200)
    b.wait_stored(30)

    r = a.s.post(a.url + API + "/event_rule", json={
        "name": "tag old scans", "query": 'title = "Old scan"', "run_retroactively": True,
        "add_tags": True, "tags_to_add": ["retro"]}, timeout=60 * TIME_FACTOR)
    assert r.status_code == 201, r.text
    rule = r.json()
    task_id = rule["retro_task"]
    t = wait_task(a, task_id)
    assert t["state"] == "done" and t["error"] is None, t
    assert t["kind"] == "retro_apply_event_rule" and t["event_rule"] == rule["uuid"]
    assert t["total"] == 200 and t["done"] == 200 and t["matched"] == 120, t
    assert t["progress_percent"] == 100

    tagged = a.list(page_size=1000, tag="retro")["events"]
    assert len(tagged) == 120
    assert all(e["event_rules"] == [rule["uuid"]] and e["title"] == "Old scan" for e in tagged)
    assert a.get(API + f"/event_rule/{rule['uuid']}").json()["hits"] == 120
    # the other organization's events are untouched, and its key cannot see the task
    assert b.total(tag="retro") == 0
    assert b.get(API + f"/task/{task_id}").status_code == 404

    # asking again re-applies (nothing changes) without counting the hits twice
    r = a.s.put(a.url + API + f"/event_rule/{rule['uuid']}", json={"run_retroactively": True},
                timeout=60 * TIME_FACTOR)
    assert r.status_code == 200, r.text
    again = r.json()["retro_task"]
    assert again != task_id
    t = wait_task(a, again)
    assert t["state"] == "done" and t["matched"] == 120, t
    assert a.get(API + f"/event_rule/{rule['uuid']}").json()["hits"] == 120
    assert a.total(tag="retro") == 120


def test_retro_dismiss_changes_status(server):
    c = server.client()
    p = new_prefix("rdis")
    c.ingest([make_event(f"{p}-{i}", title="Known noise") for i in range(40)])
    c.wait_stored(40)
    reasons = c.get(API + "/close_reason").json()["close_reasons"]
    fp = next(x["uuid"] for x in reasons if x["title"] == "False positive")
    r = c.s.post(c.url + API + "/event_rule", json={
        "name": "dismiss noise", "query": 'title = "Known noise"', "run_retroactively": True,
        "skip_previous_match": True, "dismiss": True, "dismiss_reason": fp},
        timeout=60 * TIME_FACTOR)
    assert r.status_code == 201, r.text
    t = wait_task(c, r.json()["retro_task"])
    assert t["matched"] == 40
    assert c.total(status="Dismissed") == 40
    assert c.total(status="New") == 0


def test_unknown_task_is_404(server):
    c = server.client()
    assert c.get(API + "/task/00000000-0000-4000-8000-000000000000").status_code == 404
    assert c.get(API + "/task/not-a-uuid").status_code == 404
