"""Intel Lists over HTTP: values, patterns and csv lists, their values (add, page, delete),
validation of every value before anything is stored (ip/CIDR, patterns, csv rows), polled
lists, duplicates, roles, organization scoping and global lists, and a 100,000-value list
created in one request."""

import json
import time

from sluice_harness import (API, TIME_FACTOR, UUID_RE, api_call as call, bad, new_key, new_org, ok,
                            run_cli)

NO_UUID = "00000000-0000-4000-8000-000000000000"












def lists(c, **params):
    return ok(call(c, "GET", "/list", page_size=1000, **params))["lists"]


def all_values(c, uuid, limit=1000):
    """Every value of a list, by following the cursor; checks total on each page."""
    out, after = [], None
    while True:
        params = {"limit": limit}
        if after is not None:
            params["after"] = after
        page = ok(call(c, "GET", f"/list/{uuid}/values", **params))
        assert len(page["values"]) <= limit
        out += page["values"]
        after = page["next"]
        if after is None:
            total = page["total"]
            break
    assert len(out) == total, (len(out), total)
    return out


def test_values_list_lifecycle(server):
    c = server.client()
    made = ok(call(c, "POST", "/list", {"name": "Bad domains", "list_type": "values",
                                        "data_type": "domain",
                                        "values": ["evil.com", "bad.org", "evil.com"]}), 201)
    assert UUID_RE.match(made["uuid"]) and made["value_count"] == 2
    expect = {"description": "", "list_type": "values", "data_type": "domain",
              "csv_headers": None, "csv_header_map": None, "case_sensitive": False,
              "tag_on_match": False, "flag_ioc": False, "flag_safe": False,
              "flag_spotted": False, "global_list": False, "active": True, "url": None,
              "poll_interval": 60, "last_polled": None}
    for k, v in expect.items():
        assert made[k] == v, (k, made[k])
    assert set(made) == set(expect) | {"uuid", "organization", "name", "created_at",
                                       "updated_at", "value_count"}
    u = made["uuid"]
    assert ok(call(c, "GET", f"/list/{u}")) == made
    assert lists(c) == [made]
    assert sorted(all_values(c, u)) == ["bad.org", "evil.com"]

    # add (Reflex style: newline-separated text), page, delete
    added = ok(call(c, "POST", f"/list/{u}/values",
                    {"values": "one.example\n\n  two.example  \r\nthree.example\nevil.com\n"}))
    assert added == {"added": 3, "value_count": 5}, added
    vals = all_values(c, u, limit=2)
    assert sorted(vals) == ["bad.org", "evil.com", "one.example", "three.example",
                            "two.example"]
    first = ok(call(c, "GET", f"/list/{u}/values", limit=2))
    assert len(first["values"]) == 2 and first["next"] is not None and first["total"] == 5
    gone = ok(call(c, "DELETE", f"/list/{u}/values", {"values": ["evil.com", "nope.example"]}))
    assert gone == {"deleted": 1}
    assert ok(call(c, "GET", f"/list/{u}"))["value_count"] == 4
    for params in ({"limit": 0}, {"limit": 10001}, {"after": -1}, {"after": "x"}):
        r = call(c, "GET", f"/list/{u}/values", **params)
        assert r.status_code == 400 and list(params)[0] in r.json()["detail"], r.text

    # partial update keeps the values and the other fields
    upd = ok(call(c, "PUT", f"/list/{u}", {"tag_on_match": True, "flag_ioc": True,
                                           "description": "from the feed"}))
    assert upd["tag_on_match"] and upd["flag_ioc"] and upd["value_count"] == 4
    assert upd["name"] == "Bad domains" and upd["data_type"] == "domain"
    # the shape cannot change under stored values
    r = call(c, "PUT", f"/list/{u}", {"data_type": "fqdn"})
    assert r.status_code == 409, r.text
    r = call(c, "PUT", f"/list/{u}", {"list_type": "patterns"})
    assert r.status_code == 409, r.text
    bad(call(c, "PUT", f"/list/{u}", {"values": ["x"]}), "values")

    assert ok(call(c, "DELETE", f"/list/{u}")) == {"uuid": u, "deleted": True}
    assert call(c, "GET", f"/list/{u}").status_code == 404
    assert call(c, "GET", f"/list/{u}/values").status_code == 404
    assert call(c, "POST", f"/list/{u}/values", {"values": ["x"]}).status_code == 404


def test_ip_and_pattern_validation(server):
    c = server.client()
    made = ok(call(c, "POST", "/list", {
        "name": "nets", "list_type": "values", "data_type": "ip",
        "values": ["10.0.0.0/8", "192.168.1.1", "2001:db8::/32", "::1"]}), 201)
    assert made["value_count"] == 4
    for i, v in ((1, "10.0.0.300"), (0, "not-an-ip"), (2, "10.0.0.0/33")):
        values = ["1.2.3.4", "5.6.7.8", "9.9.9.9"]
        values[i] = v
        body = bad(call(c, "POST", "/list", {"name": "nets2", "list_type": "values",
                                             "data_type": "ip", "values": values}),
                   f"values[{i}]")
        assert body["index"] == i and body["value"] == v, body
    body = bad(call(c, "POST", "/list", {"name": "nets2", "list_type": "values",
                                         "data_type": "ip",
                                         "values": "1.2.3.4\n\n10.1.1.1/40\n"}), "values")
    assert body["line"] == 3 and body["index"] == 1 and body["value"] == "10.1.1.1/40", body
    # adding to an existing list: one bad value, nothing added
    body = bad(call(c, "POST", f"/list/{made['uuid']}/values",
                    {"values": ["172.16.0.0/12", "bogus"]}), "values[1]")
    assert ok(call(c, "GET", f"/list/{made['uuid']}"))["value_count"] == 4
    # but a bad value can always be removed
    assert ok(call(c, "DELETE", f"/list/{made['uuid']}/values",
                   {"values": ["bogus", "::1"]})) == {"deleted": 1}

    pats = ok(call(c, "POST", "/list", {"name": "pats", "list_type": "patterns",
                                        "data_type": "generic", "case_sensitive": True,
                                        "values": [r"^evil\d+\.com$", "bad.*"]}), 201)
    assert pats["value_count"] == 2 and pats["case_sensitive"] is True
    body = bad(call(c, "POST", "/list", {"name": "pats2", "list_type": "patterns",
                                         "data_type": "generic",
                                         "values": ["ok", "(unclosed", "fine"]}), "values[1]")
    assert body["value"] == "(unclosed", body
    bad(call(c, "POST", f"/list/{pats['uuid']}/values", {"values": ["[z-a]"]}), "values[0]")
    body = bad(call(c, "POST", "/list", {"name": "big", "list_type": "values",
                                         "data_type": "generic",
                                         "values": ["a", "x" * 8193]}), "values[1]")
    assert body["value"].endswith("...") and len(body["value"]) < 300, body
    bad(call(c, "POST", "/list", {"name": "big", "list_type": "values",
                                  "data_type": "generic", "values": ["a", ""]}), "values[1]")
    bad(call(c, "POST", "/list", {"name": "big", "list_type": "values",
                                  "data_type": "generic", "values": ["a", 5]}), "values[1]")
    bad(call(c, "POST", "/list", {"name": "big", "list_type": "values",
                                  "data_type": "generic", "values": {"a": 1}}), "values")
    # none of the refused lists exists
    assert {x["name"] for x in lists(c)} == {"nets", "pats"}


def test_csv_lists(server):
    c = server.client()
    spec = {"name": "bazaar", "list_type": "csv", "csv_headers": ["date", "sha256", "md5"],
            "csv_header_map": {"date": "none", "sha256": "SHA256HASH", "md5": "md5hash"}}
    rows = [["2024-01-01", "a" * 64, "b" * 32], "2024-01-02,\"c,\"\"quoted\"\"\",d"]
    made = ok(call(c, "POST", "/list", dict(spec, values=rows)), 201)
    assert made["value_count"] == 2 and made["data_type"] is None
    assert made["csv_header_map"]["sha256"] == "sha256hash"
    got = [json.loads(v) if isinstance(v, str) else v for v in all_values(c, made["uuid"])]
    assert sorted(got) == sorted([["2024-01-01", "a" * 64, "b" * 32],
                                  ["2024-01-02", 'c,"quoted"', "d"]]), got
    # CSV text: records on lines, a quoted field may hold a line break
    text = '2024-02-01,x1,y1\r\n\n2024-02-02,"two\nlines",y2\n'
    assert ok(call(c, "POST", f"/list/{made['uuid']}/values", {"values": text}))["added"] == 2
    assert ok(call(c, "DELETE", f"/list/{made['uuid']}/values",
                   {"values": [["2024-02-01", "x1", "y1"]]})) == {"deleted": 1}

    body = bad(call(c, "POST", f"/list/{made['uuid']}/values",
                    {"values": [["a", "b", "c"], ["only", "two"]]}), "values[1]")
    assert "3 cells" in body["error"], body
    body = bad(call(c, "POST", f"/list/{made['uuid']}/values",
                    {"values": "a,b,c\na,\"unclosed,c\n"}), "values")
    assert body["line"] == 2, body
    bad(call(c, "POST", f"/list/{made['uuid']}/values", {"values": ['a,"b"x,c']}), "values[0]")
    bad(call(c, "POST", f"/list/{made['uuid']}/values", {"values": ["a,b,c\nd,e,f"]}),
        "values[0]")
    assert ok(call(c, "GET", f"/list/{made['uuid']}"))["value_count"] == 3

    bad(call(c, "POST", "/list", dict(spec, name="x", csv_headers=None)), "csv_headers")
    bad(call(c, "POST", "/list", dict(spec, name="x", csv_headers=["a", "a"])), "csv_headers[1]")
    bad(call(c, "POST", "/list", dict(spec, name="x", csv_header_map=None)), "csv_header_map")
    bad(call(c, "POST", "/list", dict(spec, name="x",
                                      csv_header_map={"date": "none", "sha256": "sha256hash"})),
        "csv_header_map")
    bad(call(c, "POST", "/list", dict(spec, name="x", csv_header_map={
        "date": "none", "sha256": "nosuchtype", "md5": "md5hash"})), "csv_header_map")
    bad(call(c, "POST", "/list", dict(spec, name="x", csv_header_map={
        "date": "none", "sha256": "sha256hash", "md5": "md5hash", "extra": "none"})),
        "csv_header_map")
    bad(call(c, "POST", "/list", dict(spec, name="x", data_type="ip")), "data_type")


def test_list_validation_duplicates_and_polling(server):
    c = server.client()
    base = {"name": "l", "list_type": "values", "data_type": "ip"}

    def refused(field, **fields):
        return bad(call(c, "POST", "/list", dict(base, **fields)), field)

    refused("list_type", list_type="hashes")
    bad(call(c, "POST", "/list", {"name": "l", "data_type": "ip"}), "list_type")
    bad(call(c, "POST", "/list", {"list_type": "values", "data_type": "ip"}), "name")
    refused("data_type", data_type=None)
    refused("data_type", data_type="nosuchtype")
    refused("csv_headers", csv_headers=["a"])
    refused("poll_interval", poll_interval=4)
    refused("poll_interval", poll_interval=10081)
    refused("url", url="ftp://feeds.example/list.txt")
    refused("url", url="http://")
    refused("case_sensitive", case_sensitive="no")
    refused("value_count", value_count=3)
    refused("last_polled", last_polled="2024-01-01")
    body = refused("colour", colour="red")
    assert "unknown field" in body["error"]
    assert lists(c) == []

    # a data type of the organization, and "generic"
    ok(call(c, "POST", "/data_type", {"name": "ticket"}), 201)
    ok(call(c, "POST", "/list", dict(base, name="t", data_type="Ticket")), 201)
    ok(call(c, "POST", "/list", dict(base, name="g", data_type="generic")), 201)

    made = ok(call(c, "POST", "/list", base), 201)
    r = call(c, "POST", "/list", base)
    assert r.status_code == 409 and "'l'" in r.json()["detail"], r.text
    r = call(c, "PUT", f"/list/{made['uuid']}", {"name": "t"})
    assert r.status_code == 409, r.text

    feed = ok(call(c, "POST", "/list", dict(base, name="feed",
                                            url="https://feeds.example/ips.txt",
                                            poll_interval=30)), 201)
    assert feed["url"] == "https://feeds.example/ips.txt" and feed["poll_interval"] == 30
    for method in ("POST", "DELETE"):
        r = call(c, method, f"/list/{feed['uuid']}/values", {"values": ["1.2.3.4"]})
        assert r.status_code == 409 and r.json()["detail"] == "the list is polled from its url"
    r = call(c, "POST", "/list", dict(base, name="feed2", url="http://feeds.example/x",
                                      values=["1.1.1.1"]))
    assert r.status_code == 409, r.text
    assert "feed2" not in {x["name"] for x in lists(c)}
    # without its url it takes values by hand again
    ok(call(c, "PUT", f"/list/{feed['uuid']}", {"url": None}))
    ok(call(c, "POST", f"/list/{feed['uuid']}/values", {"values": ["1.2.3.4"]}))
    bad(call(c, "POST", f"/list/{feed['uuid']}/values", {"valeus": ["1.2.3.4"]}), "valeus")
    bad(call(c, "POST", f"/list/{feed['uuid']}/values", {}), "values")

    # a list a rule names cannot be deleted or renamed
    rule = ok(call(c, "POST", "/event_rule", {
        "name": "uses l", "query": "observables.value InCIDR intel('l')"}), 201)
    r = call(c, "DELETE", f"/list/{made['uuid']}")
    assert r.status_code == 409 and "uses l" in r.json()["detail"], r.text
    assert call(c, "PUT", f"/list/{made['uuid']}", {"name": "l2"}).status_code == 409
    ok(call(c, "DELETE", f"/event_rule/{rule['uuid']}"))
    ok(call(c, "DELETE", f"/list/{made['uuid']}"))


def test_roles_organizations_and_global_lists(server):
    a = server.client()
    b_uuid, b_key = new_org(server, "lists-b")
    b = server.client(b_key)
    analyst = server.client(new_key(server, "lists-b", "analyst"))
    agent = server.client(new_key(server, "lists-b", "agent"))
    spec = {"list_type": "values", "data_type": "user"}
    a_local = ok(call(a, "POST", "/list", dict(spec, name="A users", values=["alice"])), 201)
    a_global = ok(call(a, "POST", "/list", dict(spec, name="VIPs", global_list=True,
                                                values=["ceo"])), 201)
    bad(call(b, "POST", "/list", dict(spec, name="x", global_list=True)), "global_list")
    b_list = ok(call(analyst, "POST", "/list", dict(spec, name="A users", values=["bob"])), 201)
    assert b_list["organization"] == b_uuid

    assert {x["uuid"] for x in lists(b)} == {b_list["uuid"], a_global["uuid"]}
    for method, path, body in (("GET", "", None), ("PUT", "", {"active": False}),
                               ("DELETE", "", None), ("GET", "/values", None),
                               ("POST", "/values", {"values": ["eve"]}),
                               ("DELETE", "/values", {"values": ["alice"]})):
        r = call(b, method, f"/list/{a_local['uuid']}{path}", body)
        assert r.status_code == 404, (method, path, r.text)
    assert ok(call(b, "GET", f"/list/{a_global['uuid']}"))["value_count"] == 1
    assert all_values(b, a_global["uuid"]) == ["ceo"]
    for method, path, body in (("PUT", "", {"active": False}), ("DELETE", "", None),
                               ("POST", "/values", {"values": ["eve"]}),
                               ("DELETE", "/values", {"values": ["ceo"]})):
        r = call(b, method, f"/list/{a_global['uuid']}{path}", body)
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["detail"] == "global lists belong to the default organization"
    assert ok(call(a, "GET", f"/list/{a_global['uuid']}"))["active"] is True

    # the default organization's key reaches into B
    assert {x["uuid"] for x in lists(a, organization=b_uuid)} == {b_list["uuid"],
                                                                  a_global["uuid"]}
    ok(call(a, "POST", f"/list/{b_list['uuid']}/values", {"values": ["carol"]}))
    assert sorted(all_values(b, b_list["uuid"])) == ["bob", "carol"]

    assert call(agent, "GET", "/list").status_code == 403
    assert call(agent, "POST", "/list", dict(spec, name="z")).status_code == 403
    assert call(agent, "GET", f"/list/{b_list['uuid']}/values").status_code == 403
    ok(call(analyst, "DELETE", f"/list/{b_list['uuid']}"))


def test_hundred_thousand_values_in_one_request(server):
    c = server.client()
    n = 100_000
    values = [f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}" for i in range(n)]
    t0 = time.monotonic()
    made = ok(call(c, "POST", "/list", {"name": "big ip list", "list_type": "values",
                                        "data_type": "ip", "values": values}), 201)
    took = time.monotonic() - t0
    assert made["value_count"] == n, made
    assert took < 60 * TIME_FACTOR, f"creating {n} values took {took:.1f}s"
    got = all_values(c, made["uuid"], limit=10000)
    assert len(got) == n and set(got) == set(values)
    # the same in text form, with one bad value at the very end: nothing stored
    text = "\n".join(values[:n - 1] + ["10.0.0.256"])
    body = bad(call(c, "POST", "/list", {"name": "big 2", "list_type": "values",
                                         "data_type": "ip", "values": text}), "values")
    assert body["index"] == n - 1 and body["line"] == n, body
    assert [x["name"] for x in lists(c)] == ["big ip list"]
    # removing them all in one request
    assert ok(call(c, "DELETE", f"/list/{made['uuid']}/values",
                   {"values": values}))["deleted"] == n
    assert ok(call(c, "GET", f"/list/{made['uuid']}"))["value_count"] == 0
