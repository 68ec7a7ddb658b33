#!/usr/bin/env python3
"""Loads a realistic mix of event rules and intel lists into a running sluice through its API,
for the end-to-end benchmark with rules (bench/run_phases.sh with BENCH_RULES set).

  bench/load_rules.py URL KEY RULES VALUES

RULES rules with the operator mix of bench/rules_bench.c (title equality and lists, observable
lists, severity and source, substrings, raw_log fields, expand with CIDR, lowercase +
startswith, intel lookups, regexps), and intel lists totalling VALUES values (ip, domain and
sha256 values lists and an ip network list, a patterns list). Standard library only."""

import json
import random
import sys
import urllib.request

URL, KEY, NRULES, NVALUES = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
API = URL + "/api/v2.0"


def call(method, path, body):
    req = urllib.request.Request(API + path, method=method, data=json.dumps(body).encode(),
                                 headers={"Authorization": f"Bearer {KEY}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        return json.loads(r.read())


def query(i):
    k = i % 20
    if k < 6:
        return f'title = "Alert {i}"'
    if k < 8:
        return f'title in ["Alert {i}", "Alert {i + 1}", "Alert {i + 2}"] and severity >= 2'
    if k < 11:
        return (f'observables.value in ["198.51.{i % 250}.1", "evil-{i}.example", "user{i}x", '
                f'"host-{i}x"]')
    if k == 11:
        return f'severity > 3 and source = "sensor-{i % 50}"'
    if k == 12:
        return f'description contains "campaign-{i}x"'
    if k == 13:
        return f'raw_log.event.code = {90000 + i} and raw_log.host.name exists'
    if k == 14:
        return f'expand observables (data_type = "ip" and value cidr "172.{i % 16 + 16}.0.0/16")'
    if k == 15:
        return f'title|lowercase startswith "suspicious {i} "'
    if k == 16:
        return f"intel(observables.value, 'Bad Domains') and severity = {i % 5}"
    if k == 17:
        return f'description regexp ".*beacon-{i}x[0-9]"'
    if k == 18:
        return f'tags contains "mitre-t{i}x" or source = "honeypot-{i}"'
    return f'expand observables (data_type = "user" and value|lowercase = "svc-{i}")'


def add_list(name, dtype, values, list_type="values"):
    made = call("POST", "/list", {"name": name, "list_type": list_type, "data_type": dtype,
                                  "tag_on_match": True, "flag_ioc": True})
    for i in range(0, len(values), 100000):
        call("POST", f"/list/{made['uuid']}/values", {"values": values[i:i + 100000]})


def main():
    rng = random.Random(7)
    per = NVALUES // 4
    if NVALUES:
        add_list("Bad IPs", "ip", [f"{11 + (i >> 24) % 200}.{(i >> 16) & 255}.{(i >> 8) & 255}."
                                   f"{i & 255}" for i in range(per)])
        add_list("Bad Domains", "domain", [f"c2-{i}.bad-{i % 977}.example" for i in range(per)])
        add_list("Bad Hashes", "sha256hash", ["%064x" % rng.getrandbits(256) for _ in range(per)])
        add_list("Bad Networks", "ip", [f"{100 + (i >> 16) % 100}.{(i >> 8) & 255}.{i & 255}.0/24"
                                        for i in range(per)])
        add_list("Bad Processes", "process", [f".*\\\\tool{i}(-[a-z]+)?\\.exe$" for i in range(500)],
                 "patterns")
    for i in range(NRULES):
        call("POST", "/event_rule", {"name": f"bench rule {i}", "query": query(i),
                                     "priority": i % 10 + 1, "add_tags": True,
                                     "tags_to_add": ["rule-hit"]})
    print(f"loaded {NRULES} rules and {NVALUES} list values")


main()
