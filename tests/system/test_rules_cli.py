"""`sluice rules test`: rules and lists from files against events from a file, offline."""

import json

from sluice_harness import run_cli


def write(path, obj):
    path.write_text(json.dumps(obj))
    return str(path)


def test_rules_test_reports_hits_and_actions(tmp_path):
    rules = write(tmp_path / "rules.json", {
        "rules": [
            {"uuid": "9f0c1d2e-0000-4000-8000-000000000001", "name": "tag scans",
             "query": 'title = "Port scan"', "priority": 1,
             "add_tags": True, "tags_to_add": ["scan"]},
            {"name": "bad ip", "query": "observables.value cidr intel('Bad Nets')",
             "priority": 2, "dismiss": True, "dismiss_reason": "cr-1",
             "dismiss_comment": "known scanner"},
            {"name": "never", "query": 'title = "nothing"', "update_severity": True,
             "target_severity": 4},
        ],
        "close_reasons": [{"uuid": "cr-1", "title": "False positive"}],
    })
    lists = write(tmp_path / "lists.json", [
        {"name": "Bad Nets", "list_type": "values", "data_type": "ip", "tag_on_match": True,
         "values": ["10.0.0.0/8"]}])
    events = tmp_path / "events.jsonl"
    events.write_text("\n".join([
        json.dumps({"title": "Port scan", "reference": "e1", "observables": [
            {"value": "10.1.1.1", "data_type": "ip"}]}),
        json.dumps({"title": "Quiet", "reference": "e2"}),
        "{not json",
        json.dumps({"title": "", "reference": "e4"}),
    ]) + "\n")
    r = run_cli(["rules", "test", "--rules", rules, "--lists", lists, "--events", str(events),
                 "--show-event"], tmp_path)
    assert r.returncode == 1, r.stderr  # two lines were not valid events
    out = [json.loads(line) for line in r.stdout.splitlines()]
    assert [o["line"] for o in out] == [1, 2, 3, 4]
    e1 = out[0]
    assert [h["name"] for h in e1["rules"]] == ["tag scans", "bad ip"]
    assert e1["rules"][0]["actions"] == ["add_tags"]
    assert e1["rules"][1]["actions"] == ["dismiss"]
    assert e1["status"] == "Dismissed"
    assert e1["intel"] == [{"value": "10.1.1.1", "lists": ["Bad Nets"]}]
    assert "scan" in e1["event"]["tags"] and "list: bad-nets" in e1["event"]["tags"]
    assert e1["event"]["dismiss_reason"] == "False positive"
    assert out[1]["rules"] == [] and out[1]["status"] == "New"
    assert "malformed JSON" in out[2]["error"]
    assert "title" in out[3]["error"]


def test_rules_test_refuses_a_bad_rule(tmp_path):
    rules = write(tmp_path / "rules.json", [{"name": "broken", "query": "title = "}])
    events = tmp_path / "events.jsonl"
    events.write_text('{"title": "x", "reference": "1"}\n')
    r = run_cli(["rules", "test", "--rules", rules, "--events", str(events)], tmp_path)
    assert r.returncode == 2
    assert "broken" in r.stderr and "line 1" in r.stderr


def test_rules_test_usage(tmp_path):
    r = run_cli(["rules", "test", "--rules", "x"], tmp_path)
    assert r.returncode == 2 and "--events" in r.stderr
    r = run_cli(["rules", "--help"], tmp_path)
    assert r.returncode == 0 and "rules test" in r.stdout
