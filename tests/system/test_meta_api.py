"""Close reasons, event statuses and data types over HTTP: the defaults every organization
gets, create/list/get/update/delete, validation (400 naming the field, nothing stored),
built-ins that cannot go, roles, and organization scoping (404 across organizations)."""

import json
import re

from sluice_harness import (API, TIME_FACTOR, UUID_RE, api_call as call, bad, new_key, new_org, ok,
                            run_cli)

ISO_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
BUILTIN_STATUSES = {"New", "Open", "Dismissed", "Closed", "Acknowledged"}
BUILTIN_TYPES = {"ip", "domain", "fqdn", "host", "email", "email_subject", "url", "user",
                 "md5hash", "sha1hash", "sha256hash", "imphash", "process", "command",
                 "filepath", "pid", "port", "sid", "mac", "detection_id", "generic"}












def items(c, kind, **params):
    plural = {"close_reason": "close_reasons", "event_status": "event_statuses",
              "data_type": "data_types"}[kind]
    body = ok(call(c, "GET", f"/{kind}", page_size=1000, **params))
    assert body["pagination"]["total_results"] == len(body[plural]), body["pagination"]
    return body[plural]


def test_defaults_of_every_organization(server):
    c = server.client()
    statuses = items(c, "event_status")
    assert {s["name"] for s in statuses} == BUILTIN_STATUSES
    orgs = {s["organization"] for s in statuses}
    assert len(orgs) == 1 and UUID_RE.match(orgs.pop())
    for s in statuses:
        assert set(s) == {"uuid", "organization", "name", "description", "closed", "created_at",
                          "updated_at"}, s
        assert UUID_RE.match(s["uuid"]) and ISO_RE.match(s["created_at"]), s
        assert isinstance(s["closed"], bool), s
    by_name = {s["name"]: s for s in statuses}
    assert by_name["Closed"]["closed"] is True and by_name["New"]["closed"] is False
    assert by_name["Open"]["closed"] is False
    reasons = items(c, "close_reason")
    assert {r["title"] for r in reasons} == {"False positive", "True positive", "Duplicate",
                                             "Other"}
    for r in reasons:
        assert set(r) == {"uuid", "organization", "title", "description", "created_at",
                          "updated_at"}, r
    types = items(c, "data_type")
    assert {t["name"] for t in types} == BUILTIN_TYPES
    assert set(types[0]) == {"uuid", "organization", "name", "description", "regex",
                             "created_at", "updated_at"}, types[0]

    # a new organization gets its own copies
    b_uuid, b_key = new_org(server, "meta-b")
    b = server.client(b_key)
    b_statuses = items(b, "event_status")
    assert {s["name"] for s in b_statuses} == BUILTIN_STATUSES
    assert {s["organization"] for s in b_statuses} == {b_uuid}
    assert not {s["uuid"] for s in b_statuses} & {s["uuid"] for s in statuses}
    assert {t["name"] for t in items(b, "data_type")} == BUILTIN_TYPES


def test_close_reason_crud_and_validation(server):
    c = server.client()
    before = len(items(c, "close_reason"))
    made = ok(call(c, "POST", "/close_reason", {"title": "Benign scanner",
                                                "description": "internal vuln scan"}), 201)
    assert UUID_RE.match(made["uuid"]) and made["title"] == "Benign scanner"
    assert made["description"] == "internal vuln scan"
    u = made["uuid"]
    assert ok(call(c, "GET", f"/close_reason/{u}")) == made
    assert ok(call(c, "GET", f"/close_reason/{u.upper()}"))["uuid"] == u
    assert any(r["uuid"] == u for r in items(c, "close_reason"))
    assert [r["title"] for r in items(c, "close_reason", name__like="scanner")] == \
        ["Benign scanner"]

    # partial update: only the given field changes
    upd = ok(call(c, "PUT", f"/close_reason/{u}", {"title": "Benign scan"}))
    assert upd["title"] == "Benign scan" and upd["description"] == "internal vuln scan"
    assert upd["created_at"] == made["created_at"] and upd["updated_at"] >= made["updated_at"]

    # duplicate titles in one organization
    r = call(c, "POST", "/close_reason", {"title": "Duplicate"})
    assert r.status_code == 409 and "Duplicate" in r.json()["detail"], r.text
    assert call(c, "PUT", f"/close_reason/{u}", {"title": "Other"}).status_code == 409

    # every validation error names its field and stores nothing
    bad(call(c, "POST", "/close_reason", {}), "title")
    bad(call(c, "POST", "/close_reason", {"title": ""}), "title")
    bad(call(c, "POST", "/close_reason", {"title": "x" * 256}), "title")
    bad(call(c, "POST", "/close_reason", {"title": 5}), "title")
    bad(call(c, "POST", "/close_reason", {"title": "a\nb"}), "title")
    bad(call(c, "POST", "/close_reason", {"title": "ok", "description": None}), "description")
    body = bad(call(c, "POST", "/close_reason", {"title": "ok", "titel": "x", "desc": 1}),
               "titel")
    assert "desc" in body["error"] and "unknown fields" in body["error"], body
    bad(call(c, "POST", "/close_reason", {"title": "ok", "uuid": made["uuid"]}), "uuid")
    bad(call(c, "POST", "/close_reason", {"title": "ok", "created_at": "x"}), "created_at")
    bad(call(c, "PUT", f"/close_reason/{u}", {"title": None}), "title")
    r = call(c, "POST", "/close_reason", raw='{"title": "x",')
    assert r.status_code == 400 and r.json()["error"] == "malformed JSON", r.text
    r = call(c, "POST", "/close_reason", raw='["title"]')
    assert r.status_code == 400 and r.json()["error"] == "invalid body", r.text
    r = call(c, "POST", "/close_reason", raw=b'{"title": "\xff"}')
    assert r.status_code == 400 and r.json()["error"] == "malformed JSON", r.text
    assert len(items(c, "close_reason")) == before + 1
    assert ok(call(c, "GET", f"/close_reason/{u}"))["title"] == "Benign scan"

    assert ok(call(c, "DELETE", f"/close_reason/{u}")) == {"uuid": u, "deleted": True}
    assert call(c, "GET", f"/close_reason/{u}").status_code == 404
    assert call(c, "DELETE", f"/close_reason/{u}").status_code == 404
    assert call(c, "PUT", f"/close_reason/{u}", {"title": "x"}).status_code == 404
    assert call(c, "GET", "/close_reason/not-a-uuid").status_code == 404
    assert len(items(c, "close_reason")) == before


def test_close_reason_in_use_by_a_rule(server):
    c = server.client()
    reason = ok(call(c, "POST", "/close_reason", {"title": "Known noise"}), 201)
    rule = ok(call(c, "POST", "/event_rule", {
        "name": "dismiss noise", "query": 'title = "noise"', "dismiss": True,
        "dismiss_reason": reason["uuid"]}), 201)
    r = call(c, "DELETE", f"/close_reason/{reason['uuid']}")
    assert r.status_code == 409 and "dismiss noise" in r.json()["detail"], r.text
    # renaming keeps the reference (by uuid)
    ok(call(c, "PUT", f"/close_reason/{reason['uuid']}", {"title": "Known noise 2"}))
    ok(call(c, "DELETE", f"/event_rule/{rule['uuid']}"))
    ok(call(c, "DELETE", f"/close_reason/{reason['uuid']}"))


def test_event_status_builtins(server):
    c = server.client()
    by_name = {s["name"]: s for s in items(c, "event_status")}
    new = by_name["New"]
    r = call(c, "DELETE", f"/event_status/{new['uuid']}")
    assert r.status_code == 409 and "New" in r.json()["detail"], r.text
    r = call(c, "PUT", f"/event_status/{by_name['Open']['uuid']}", {"name": "Opened"})
    assert r.status_code == 409, r.text
    # a built-in's description may change; its name stays
    upd = ok(call(c, "PUT", f"/event_status/{new['uuid']}", {"description": "fresh"}))
    assert upd["name"] == "New" and upd["description"] == "fresh"
    assert ok(call(c, "PUT", f"/event_status/{new['uuid']}", {"name": "New"}))["name"] == "New"

    esc = ok(call(c, "POST", "/event_status", {"name": "Escalated", "description": "to IR",
                                               "closed": False}), 201)
    assert esc["closed"] is False and esc["organization"] == new["organization"]
    assert ok(call(c, "POST", "/event_status", {"name": "Resolved"}), 201)["closed"] is False
    assert call(c, "POST", "/event_status", {"name": "Escalated"}).status_code == 409
    bad(call(c, "POST", "/event_status", {"name": "X", "closed": "yes"}), "closed")
    bad(call(c, "POST", "/event_status", {"description": "no name"}), "name")
    ren = ok(call(c, "PUT", f"/event_status/{esc['uuid']}", {"name": "Escalated to IR",
                                                              "closed": True}))
    assert ren["name"] == "Escalated to IR" and ren["closed"] is True
    assert ren["description"] == "to IR"
    ok(call(c, "DELETE", f"/event_status/{esc['uuid']}"))
    assert {s["name"] for s in items(c, "event_status")} == BUILTIN_STATUSES | {"Resolved"}


def test_data_types(server):
    c = server.client()
    t = ok(call(c, "POST", "/data_type", {"name": "Ticket_ID", "description": "JIRA key",
                                          "regex": "^[A-Z]+-[0-9]+$"}), 201)
    assert t["name"] == "ticket_id" and t["regex"] == "^[A-Z]+-[0-9]+$"
    t2 = ok(call(c, "POST", "/data_type", {"name": "asset"}), 201)
    assert t2["regex"] is None and t2["description"] == ""
    assert call(c, "POST", "/data_type", {"name": "TICKET_ID"}).status_code == 409
    before = len(items(c, "data_type"))
    bad(call(c, "POST", "/data_type", {"name": "bad", "regex": "(unclosed"}), "regex")
    bad(call(c, "POST", "/data_type", {"name": "bad", "regex": ""}), "regex")
    bad(call(c, "POST", "/data_type", {"name": "two words"}), "name")
    bad(call(c, "POST", "/data_type", {"name": "auto"}), "name")
    bad(call(c, "POST", "/data_type", {"name": "x" * 65}), "name")
    bad(call(c, "PUT", f"/data_type/{t['uuid']}", {"regex": "[z-a]"}), "regex")
    assert len(items(c, "data_type")) == before

    upd = ok(call(c, "PUT", f"/data_type/{t['uuid']}", {"regex": None}))
    assert upd["regex"] is None and upd["name"] == "ticket_id"

    ip = next(x for x in items(c, "data_type") if x["name"] == "ip")
    assert call(c, "DELETE", f"/data_type/{ip['uuid']}").status_code == 409
    assert call(c, "PUT", f"/data_type/{ip['uuid']}", {"name": "ipaddr"}).status_code == 409
    ok(call(c, "PUT", f"/data_type/{ip['uuid']}", {"description": "IPv4 or IPv6"}))

    # a data type a list uses cannot be deleted or renamed
    lst = ok(call(c, "POST", "/list", {"name": "tickets", "list_type": "values",
                                       "data_type": "ticket_id"}), 201)
    r = call(c, "DELETE", f"/data_type/{t['uuid']}")
    assert r.status_code == 409 and "tickets" in r.json()["detail"], r.text
    assert call(c, "PUT", f"/data_type/{t['uuid']}", {"name": "tkt"}).status_code == 409
    ok(call(c, "DELETE", f"/list/{lst['uuid']}"))
    ok(call(c, "DELETE", f"/data_type/{t['uuid']}"))
    ok(call(c, "DELETE", f"/data_type/{t2['uuid']}"))
    assert {x["name"] for x in items(c, "data_type")} == BUILTIN_TYPES


def test_roles(server):
    admin = server.client()
    analyst = server.client(new_key(server, "default", "analyst"))
    agent = server.client(new_key(server, "default", "agent"))
    nobody = server.client("")
    reason = items(admin, "close_reason")[0]
    for kind in ("close_reason", "event_status", "data_type"):
        assert call(analyst, "GET", f"/{kind}").status_code == 200
        assert call(agent, "GET", f"/{kind}").status_code == 403
        assert call(nobody, "GET", f"/{kind}").status_code == 401
        r = call(analyst, "POST", f"/{kind}", {"name": "x", "title": "x"})
        assert r.status_code == 403 and "analyst" in r.json()["detail"], r.text
        assert call(agent, "POST", f"/{kind}", {"name": "x"}).status_code == 403
    assert call(analyst, "GET", f"/close_reason/{reason['uuid']}").status_code == 200
    assert call(analyst, "PUT", f"/close_reason/{reason['uuid']}",
                {"title": "y"}).status_code == 403
    assert call(analyst, "DELETE", f"/close_reason/{reason['uuid']}").status_code == 403
    assert len(items(admin, "close_reason")) == 4


def test_organization_scoping(server):
    a = server.client()
    a_org = items(a, "event_status")[0]["organization"]
    b_uuid, b_key = new_org(server, "scope-b")
    b = server.client(b_key)
    a_reason = ok(call(a, "POST", "/close_reason", {"title": "A only"}), 201)
    b_reason = ok(call(b, "POST", "/close_reason", {"title": "B only"}), 201)
    assert b_reason["organization"] == b_uuid and a_reason["organization"] == a_org

    # B sees only its own; A's object answers 404 to B, for every method
    assert "A only" not in {r["title"] for r in items(b, "close_reason")}
    for method, body in (("GET", None), ("PUT", {"title": "hijack"}), ("DELETE", None)):
        r = call(b, method, f"/close_reason/{a_reason['uuid']}", body)
        assert r.status_code == 404, (method, r.status_code, r.text)
    assert ok(call(a, "GET", f"/close_reason/{a_reason['uuid']}"))["title"] == "A only"
    # B may not name another organization (whether it exists or not)
    bad(call(b, "GET", "/close_reason", organization=a_org), "organization")
    bad(call(b, "POST", "/close_reason", {"title": "x", "organization": a_org}), "organization")

    # the default organization's key reaches into B
    in_b = items(a, "close_reason", organization=b_uuid)
    assert "B only" in {r["title"] for r in in_b} and "A only" not in {r["title"] for r in in_b}
    assert ok(call(a, "GET", f"/close_reason/{b_reason['uuid']}"))["title"] == "B only"
    made = ok(call(a, "POST", "/close_reason", {"title": "made by A", "organization": b_uuid}),
              201)
    assert made["organization"] == b_uuid
    assert "made by A" in {r["title"] for r in items(b, "close_reason")}
    # naming B but an object of A: not found in B
    r = call(a, "GET", f"/close_reason/{a_reason['uuid']}", organization=b_uuid)
    assert r.status_code == 404, r.text
    bad(call(a, "GET", "/close_reason", organization="00000000-0000-4000-8000-000000000000"),
        "organization")
    bad(call(a, "GET", "/close_reason", organization="nope"), "organization")
    # the same title may exist in two organizations
    ok(call(b, "POST", "/close_reason", {"title": "A only"}), 201)
