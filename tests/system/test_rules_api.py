"""Event Rules over HTTP: create with defaults, partial update, delete, every validation error
(400 naming the field, nothing stored), duplicate names, roles, organization scoping and
global rules, and test_rql against ingested events."""

import json
import re
from datetime import datetime, timedelta, timezone

from sluice_harness import (API, TIME_FACTOR, UUID_RE, api_call as call, bad, make_events, new_key,
                            new_org, new_prefix, ok, run_cli)

ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
DEFAULTS = {
    "description": "", "priority": 1, "active": True, "global_rule": False, "expire": False,
    "expire_days": 1, "expire_at": None, "run_retroactively": False,
    "skip_previous_match": False, "add_tags": False, "tags_to_add": [], "remove_tags": False,
    "tags_to_remove": [], "dismiss": False, "dismiss_reason": None, "dismiss_comment": "",
    "merge_into_case": False, "target_case_uuid": None, "create_new_case": False,
    "case_template": None, "update_severity": False, "target_severity": None,
    "set_organization": False, "target_organization": None, "mute_event": False,
    "mute_period": None, "notes": "",
}
NO_UUID = "00000000-0000-4000-8000-000000000000"












def rules(c, **params):
    body = ok(call(c, "GET", "/event_rule", page_size=1000, **params))
    return body["event_rules"]


def iso(s):
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)


def test_create_with_defaults_get_list_delete(server):
    c = server.client()
    made = ok(call(c, "POST", "/event_rule", {"name": "Failed logins",
                                              "query": 'title = "Failed login"'}), 201)
    assert UUID_RE.match(made["uuid"]) and UUID_RE.match(made["organization"])
    for k, v in DEFAULTS.items():
        assert made[k] == v, (k, made[k])
    assert made["name"] == "Failed logins" and made["query"] == 'title = "Failed login"'
    assert made["created_by"] and made["hits"] == 0 and made["last_hit"] is None
    assert ISO_RE.match(made["created_at"]) and ISO_RE.match(made["updated_at"])
    assert made["retro_task"] is None  # no run_retroactively: no task
    assert set(made) == set(DEFAULTS) | {"uuid", "organization", "name", "query", "created_by",
                                         "created_at", "updated_at", "hits", "last_hit",
                                         "retro_task"}
    assert ok(call(c, "GET", f"/event_rule/{made['uuid']}")) == made
    listed = ok(call(c, "GET", "/event_rule"))
    assert listed["event_rules"] == [made]
    assert listed["pagination"] == {"total_results": 1, "pages": 1, "page": 1, "page_size": 100}
    assert ok(call(c, "DELETE", f"/event_rule/{made['uuid']}")) == {"uuid": made["uuid"],
                                                                   "deleted": True}
    assert call(c, "GET", f"/event_rule/{made['uuid']}").status_code == 404
    assert call(c, "DELETE", f"/event_rule/{made['uuid']}").status_code == 404
    assert rules(c) == []


def test_every_action_and_expiry(server):
    c = server.client()
    reason = next(r for r in ok(call(c, "GET", "/close_reason"))["close_reasons"]
                  if r["title"] == "False positive")
    b_uuid, _ = new_org(server, "rules-target")
    t0 = datetime.now(timezone.utc)
    made = ok(call(c, "POST", "/event_rule", {
        "name": "all actions", "description": "d", "query": "severity > 2", "priority": 7,
        "expire": True, "expire_days": 3, "run_retroactively": True,
        "skip_previous_match": True, "add_tags": True, "tags_to_add": ["a", "b", "a"],
        "remove_tags": True, "tags_to_remove": ["c"], "dismiss": True,
        "dismiss_reason": reason["uuid"].upper(), "dismiss_comment": "noise",
        "update_severity": True, "target_severity": 0, "set_organization": True,
        "target_organization": b_uuid, "mute_event": True, "mute_period": 60,
        "notes": "n", "create_new_case": True, "case_template": None}), 201)
    assert made["tags_to_add"] == ["a", "b"] and made["dismiss_reason"] == reason["uuid"]
    assert made["priority"] == 7 and made["target_severity"] == 0
    exp = iso(made["expire_at"])
    assert t0 + timedelta(days=3) - timedelta(minutes=1) <= exp <= \
        datetime.now(timezone.utc) + timedelta(days=3, minutes=1), made["expire_at"]

    # partial update: only the given fields change; expire_at follows expire/expire_days
    upd = ok(call(c, "PUT", f"/event_rule/{made['uuid']}", {"priority": 9}))
    assert upd["priority"] == 9 and upd["expire_at"] == made["expire_at"]
    assert {k: v for k, v in upd.items() if k not in ("priority", "updated_at")} == \
        {k: v for k, v in made.items() if k not in ("priority", "updated_at")}
    upd = ok(call(c, "PUT", f"/event_rule/{made['uuid']}", {"expire_days": 10}))
    assert iso(upd["expire_at"]) > exp + timedelta(days=6)
    upd = ok(call(c, "PUT", f"/event_rule/{made['uuid']}", {"expire": False}))
    assert upd["expire_at"] is None and upd["expire_days"] == 10


def test_validation_errors_store_nothing(server):
    c = server.client()
    b_uuid, b_key = new_org(server, "rules-b")
    b = server.client(b_key)
    base = {"name": "r", "query": 'title = "x"'}

    def refused(field, status=400, client=c, **fields):
        body = dict(base)
        body.update(fields)
        return bad(call(client, "POST", "/event_rule", body), field, status)

    bad(call(c, "POST", "/event_rule", {"query": "title = 'x'"}), "name")
    bad(call(c, "POST", "/event_rule", {"name": "r"}), "query")
    refused("name", name="")
    refused("name", name="n" * 256)
    refused("query", query="")
    body = refused("query", query='title = "x" and and')
    assert body["line"] == 1 and body["column"] >= 13, body
    assert re.match(r"^query: line 1, column \d+: ", body["error"]), body
    body = refused("query", query='title = "x"\n  or (severity >')
    assert body["line"] == 2, body
    body = refused("nmae", nmae="typo")
    assert "unknown field" in body["error"], body
    refused("priority", priority=0)
    refused("priority", priority=65536)
    refused("priority", priority=1.5)
    refused("priority", priority="1")
    refused("active", active="true")
    refused("expire_days", expire_days=0)
    refused("expire_days", expire_days=3651)
    refused("expire_at", expire_at="2030-01-01T00:00:00Z")
    refused("hits", hits=5)
    refused("tags_to_add", add_tags=True, tags_to_add="x")
    refused("tags_to_add", add_tags=True, tags_to_add=[])
    refused("tags_to_add[1]", add_tags=True, tags_to_add=["ok", ""])
    refused("tags_to_add[0]", add_tags=True, tags_to_add=["x" * 257])
    refused("tags_to_add", add_tags=True, tags_to_add=[f"t{i}" for i in range(101)])
    refused("tags_to_remove", remove_tags=True)
    refused("dismiss_reason", dismiss=True)
    refused("dismiss_reason", dismiss=True, dismiss_reason="nope")
    refused("dismiss_reason", dismiss=True, dismiss_reason=NO_UUID)
    refused("target_case_uuid", merge_into_case=True)
    refused("target_case_uuid", merge_into_case=True, target_case_uuid=NO_UUID)
    refused("case_template", create_new_case=True, case_template=NO_UUID)
    refused("update_severity", update_severity=1)
    refused("target_severity", update_severity=True)
    refused("target_severity", update_severity=True, target_severity=5)
    refused("target_organization", set_organization=True)
    refused("target_organization", set_organization=True, target_organization=NO_UUID)
    refused("mute_period", mute_event=True)
    refused("mute_period", mute_event=True, mute_period=0)
    refused("mute_period", mute_event=True, mute_period=525601)
    refused("create_new_case", create_new_case=True, merge_into_case=True,
            target_case_uuid=NO_UUID)
    body = refused("query", query="expand observables (intel(value, 'No Such List'))")
    assert "No Such List" in body["error"], body
    # only the default organization may make global rules or move events
    refused("global_rule", client=b, global_rule=True)
    refused("set_organization", client=b, set_organization=True, target_organization=b_uuid)
    # another organization's close reason is not the rule's to use
    b_reason = ok(call(b, "POST", "/close_reason", {"title": "B reason"}), 201)
    refused("dismiss_reason", dismiss=True, dismiss_reason=b_reason["uuid"])
    assert rules(c) == [] and rules(b) == []

    # b may use the default organization's close reasons
    a_reason = ok(call(c, "GET", "/close_reason"))["close_reasons"][0]
    ok(call(b, "POST", "/event_rule", dict(base, dismiss=True,
                                            dismiss_reason=a_reason["uuid"])), 201)

    # an update is checked the same way and changes nothing when refused
    made = ok(call(c, "POST", "/event_rule", dict(base, name="keep")), 201)
    for fields, field in (({"query": "title ="}, "query"), ({"priority": -1}, "priority"),
                          ({"dismiss": True}, "dismiss_reason"), ({"uuid": NO_UUID}, "uuid"),
                          ({"name": None}, "name"), ({"qurey": "x"}, "qurey")):
        bad(call(c, "PUT", f"/event_rule/{made['uuid']}", fields), field)
    assert ok(call(c, "GET", f"/event_rule/{made['uuid']}")) == made


def test_duplicates_filters_and_roles(server):
    c = server.client()
    r1 = ok(call(c, "POST", "/event_rule", {"name": "Alpha rule", "query": "severity = 1"}), 201)
    ok(call(c, "POST", "/event_rule", {"name": "Beta rule", "query": "severity = 2",
                                       "active": False}), 201)
    r = call(c, "POST", "/event_rule", {"name": "Alpha rule", "query": "severity = 3"})
    assert r.status_code == 409 and "Alpha rule" in r.json()["detail"], r.text
    r = call(c, "PUT", f"/event_rule/{r1['uuid']}", {"name": "Beta rule"})
    assert r.status_code == 409, r.text
    assert [x["name"] for x in rules(c)] == ["Alpha rule", "Beta rule"]
    assert [x["name"] for x in rules(c, active="false")] == ["Beta rule"]
    assert [x["name"] for x in rules(c, active="true")] == ["Alpha rule"]
    assert [x["name"] for x in rules(c, name__like="ALPHA")] == ["Alpha rule"]
    page = ok(call(c, "GET", "/event_rule", page_size=1, page=2))
    assert [x["name"] for x in page["event_rules"]] == ["Beta rule"]
    assert page["pagination"]["pages"] == 2
    r = call(c, "GET", "/event_rule", active="maybe")
    assert r.status_code == 400 and "active" in r.json()["detail"], r.text

    analyst = server.client(new_key(server, "default", "analyst"))
    agent = server.client(new_key(server, "default", "agent"))
    made = ok(call(analyst, "POST", "/event_rule", {"name": "by analyst", "query": "tlp = 2"}),
              201)
    ok(call(analyst, "PUT", f"/event_rule/{made['uuid']}", {"priority": 3}))
    assert len(rules(analyst)) == 3
    for method, path, body in (("GET", "/event_rule", None),
                               ("GET", f"/event_rule/{made['uuid']}", None),
                               ("POST", "/event_rule", {"name": "x", "query": "tlp = 1"}),
                               ("PUT", f"/event_rule/{made['uuid']}", {"priority": 2}),
                               ("DELETE", f"/event_rule/{made['uuid']}", None),
                               ("POST", "/event_rule/test_rql", {"query": "tlp = 1"})):
        r = call(agent, method, path, body)
        assert r.status_code == 403 and "agent" in r.json()["detail"], (method, path, r.text)
    assert call(server.client(""), "GET", "/event_rule").status_code == 401
    ok(call(analyst, "DELETE", f"/event_rule/{made['uuid']}"))


def test_organizations_and_global_rules(server):
    a = server.client()
    b_uuid, b_key = new_org(server, "rules-tenant")
    b = server.client(b_key)
    a_local = ok(call(a, "POST", "/event_rule", {"name": "A local", "query": "tlp = 1"}), 201)
    a_global = ok(call(a, "POST", "/event_rule", {"name": "A global", "query": "tlp = 2",
                                                  "global_rule": True}), 201)
    b_rule = ok(call(b, "POST", "/event_rule", {"name": "A local", "query": "tlp = 3"}), 201)
    assert b_rule["organization"] == b_uuid

    # B sees its own rules and the global ones, never A's others
    assert {x["name"] for x in rules(b)} == {"A local", "A global"}
    assert {x["uuid"] for x in rules(b)} == {b_rule["uuid"], a_global["uuid"]}
    for method, body in (("GET", None), ("PUT", {"priority": 2}), ("DELETE", None)):
        r = call(b, method, f"/event_rule/{a_local['uuid']}", body)
        assert r.status_code == 404, (method, r.text)
    # global rules are visible to B, but only the default organization changes them
    assert ok(call(b, "GET", f"/event_rule/{a_global['uuid']}"))["name"] == "A global"
    for method, body in (("PUT", {"priority": 2}), ("DELETE", None)):
        r = call(b, method, f"/event_rule/{a_global['uuid']}", body)
        assert r.status_code == 403, (method, r.text)
        assert r.json()["detail"] == "global rules belong to the default organization"
    assert ok(call(a, "GET", f"/event_rule/{a_global['uuid']}"))["priority"] == 1

    # the default organization's key acts on B with "organization"
    in_b = rules(a, organization=b_uuid)
    assert {x["uuid"] for x in in_b} == {b_rule["uuid"], a_global["uuid"]}
    made = ok(call(a, "POST", "/event_rule", {"name": "for B", "query": "tlp = 4",
                                              "organization": b_uuid}), 201)
    assert made["organization"] == b_uuid
    assert "for B" in {x["name"] for x in rules(b)}
    ok(call(a, "PUT", f"/event_rule/{b_rule['uuid']}", {"priority": 5}))
    assert ok(call(b, "GET", f"/event_rule/{b_rule['uuid']}"))["priority"] == 5
    bad(call(a, "POST", "/event_rule", {"name": "g", "query": "tlp = 1", "global_rule": True,
                                        "organization": b_uuid}), "global_rule")
    bad(call(b, "POST", "/event_rule", {"name": "x", "query": "tlp = 1",
                                        "organization": a_global["organization"]}),
        "organization")
    ok(call(b, "DELETE", f"/event_rule/{made['uuid']}"))


def ingest_mixed(c, prefix, needles, total, stored_after=None):
    """total events, the first `needles` titled "Needle in haystack" with observable
    203.0.113.7; the others titled "Hay" with 198.51.100.x. Waits until stored_after (default
    total) events of the organization are stored."""
    evs = make_events(prefix, total)
    for i, e in enumerate(evs):
        if i < needles:
            e["title"] = "Needle in haystack"
            e["observables"] = [{"value": "203.0.113.7", "data_type": "ip"}]
        else:
            e["title"] = "Hay"
            e["observables"] = [{"value": f"198.51.100.{i % 250}", "data_type": "ip"}]
    c.ingest(evs)
    c.wait_stored(stored_after or total)


def test_rql_against_stored_events(server):
    c = server.client()
    ingest_mixed(c, new_prefix("rql"), 8, 20)

    res = ok(call(c, "POST", "/event_rule/test_rql", {"query": 'title = "Needle in haystack"'}))
    assert res["tested"] == 20 and res["hits"] == 8, res
    assert abs(res["hit_ratio"] - 0.4) < 1e-9, res
    assert "30 %" in res["warning"], res
    assert len(res["samples"]) == 8 and all(s["title"] == "Needle in haystack"
                                            for s in res["samples"]), res
    assert isinstance(res["took_ms"], (int, float)) and res["took_ms"] >= 0

    res = ok(call(c, "POST", "/event_rule/test_rql", {"query": "title = 'Hay'",
                                                      "return_results": False}))
    assert res["hits"] == 12 and "samples" not in res and "warning" in res, res
    res = ok(call(c, "POST", "/event_rule/test_rql", {"query": "title = 'Nothing'"}))
    assert res["hits"] == 0 and res["hit_ratio"] == 0 and "warning" not in res, res
    assert res["samples"] == []
    res = ok(call(c, "POST", "/event_rule/test_rql", {"query": "title = 'Hay'",
                                                      "event_count": 5}))
    assert res["tested"] == 5, res

    # at most 10 samples, and a query under 30 % has no warning
    ingest_mixed(c, new_prefix("rql2"), 0, 40, stored_after=60)
    res = ok(call(c, "POST", "/event_rule/test_rql", {"query": "title = 'Hay'"}))
    assert res["tested"] == 60 and res["hits"] == 52 and len(res["samples"]) == 10, res
    res = ok(call(c, "POST", "/event_rule/test_rql",
                  {"query": 'title = "Needle in haystack"'}))
    assert res["hits"] == 8 and "warning" not in res, res

    # intel lists take part; a list that does not exist is refused like on create
    ok(call(c, "POST", "/list", {"name": "Bad IPs", "list_type": "values", "data_type": "ip",
                                 "values": ["203.0.113.0/24"]}), 201)
    res = ok(call(c, "POST", "/event_rule/test_rql",
                  {"query": "observables.value InCIDR intel('Bad IPs')"}))
    assert res["hits"] == 8, res
    bad(call(c, "POST", "/event_rule/test_rql", {"query": "expand observables "
                                                 "(intel(value, 'Good IPs'))"}), "query")
    # errors
    body = bad(call(c, "POST", "/event_rule/test_rql", {"query": "title = "}), "query")
    assert body["line"] == 1 and "column" in body, body
    bad(call(c, "POST", "/event_rule/test_rql", {}), "query")
    bad(call(c, "POST", "/event_rule/test_rql", {"query": "tlp = 1", "event_count": 0}),
        "event_count")
    bad(call(c, "POST", "/event_rule/test_rql", {"query": "tlp = 1", "event_count": 10001}),
        "event_count")
    bad(call(c, "POST", "/event_rule/test_rql", {"query": "tlp = 1", "start": "yesterday"}),
        "start")
    bad(call(c, "POST", "/event_rule/test_rql", {"query": "tlp = 1", "verbose": True}),
        "verbose")
    # a time range: nothing ingested in 2001
    res = ok(call(c, "POST", "/event_rule/test_rql", {"query": "title = 'Hay'",
                                                      "end": "2001-01-01"}))
    assert res["tested"] == 0 and res["hits"] == 0, res


def test_rql_is_per_organization(server):
    a = server.client()
    b_uuid, b_key = new_org(server, "rql-b")
    b = server.client(b_key)
    ingest_mixed(a, new_prefix("rqa"), 3, 6)
    ingest_mixed(b, new_prefix("rqb"), 1, 4)
    assert ok(call(b, "POST", "/event_rule/test_rql", {"query": "title = 'Hay'"}))["tested"] == 4
    res = ok(call(a, "POST", "/event_rule/test_rql", {"query": "title = 'Hay'",
                                                      "organization": b_uuid}))
    assert res["tested"] == 4 and res["hits"] == 3, res
    assert all(s["organization"] == b_uuid for s in res["samples"])
    res = ok(call(a, "POST", "/event_rule/test_rql", {"query": "title = 'Hay'"}))
    assert res["tested"] == 6 and res["hits"] == 3, res
