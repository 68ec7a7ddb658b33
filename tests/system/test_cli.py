"""The command line: version, help, org and apikey management, configuration errors."""

import json
import os
import re
import signal
import stat
import subprocess

import pytest
import requests

from sluice_harness import API, TIME_FACTOR, UUID_RE, base_env, run_cli, sluice_bin


def test_version_and_help(tmp_path):
    v = run_cli(["version"], tmp_path)
    assert v.returncode == 0, v.stderr
    assert re.search(r"^sluice \d+\.\d+\.\d+", v.stdout, re.M), v.stdout

    h = run_cli(["--help"], tmp_path)
    assert h.returncode == 0, h.stderr
    for word in ("serve", "org", "apikey", "config", "version"):
        assert word in h.stdout, (word, h.stdout)

    # every subcommand has its own --help, exit 0, on stdout
    for sub in (["serve"], ["org", "create"], ["apikey", "create"], ["config"]):
        h = run_cli(sub + ["--help"], tmp_path)
        assert h.returncode == 0, (sub, h.stderr)
        assert "usage" in h.stdout.lower(), (sub, h.stdout)

    bad = run_cli(["no-such-command"], tmp_path)
    assert bad.returncode != 0
    assert "no-such-command" in bad.stderr, bad.stderr


def test_org_create_and_duplicate(tmp_path):
    r = run_cli(["org", "create", "acme"], tmp_path)
    assert r.returncode == 0, r.stderr
    org = json.loads(r.stdout)
    assert org["name"] == "acme"
    assert UUID_RE.match(org["uuid"]), org

    r2 = run_cli(["org", "create", "other"], tmp_path)
    assert r2.returncode == 0, r2.stderr
    assert json.loads(r2.stdout)["uuid"] != org["uuid"]

    dup = run_cli(["org", "create", "acme"], tmp_path)
    assert dup.returncode != 0
    assert dup.stdout.strip() == "", dup.stdout
    assert "acme" in dup.stderr and "exist" in dup.stderr.lower(), dup.stderr

    empty = run_cli(["org", "create", ""], tmp_path)
    assert empty.returncode != 0
    assert empty.stderr.strip(), "an empty org name must be refused with a message"


def test_apikey_create(tmp_path):
    assert run_cli(["org", "create", "acme"], tmp_path).returncode == 0
    keys = set()
    for role in (None, "admin", "analyst", "agent"):
        args = ["apikey", "create", "--org", "acme"] + (["--role", role] if role else [])
        r = run_cli(args, tmp_path)
        assert r.returncode == 0, (role, r.stderr)
        key = json.loads(r.stdout)["key"]
        assert isinstance(key, str) and len(key) >= 20, key
        keys.add(key)
    assert len(keys) == 4, "every key must be new"

    unknown = run_cli(["apikey", "create", "--org", "nosuchorg"], tmp_path)
    assert unknown.returncode != 0
    assert unknown.stdout.strip() == ""
    assert "nosuchorg" in unknown.stderr, unknown.stderr

    badrole = run_cli(["apikey", "create", "--org", "acme", "--role", "root"], tmp_path)
    assert badrole.returncode != 0
    assert "root" in badrole.stderr, badrole.stderr

    missing = run_cli(["apikey", "create"], tmp_path)
    assert missing.returncode != 0
    assert "--org" in missing.stderr, missing.stderr


@pytest.mark.parametrize("name,value", [
    ("REFLEX_EVENT_PROCESSOR_WORKER_COUNT", "abc"),
    ("REFLEX_EVENT_PROCESSOR_WORKER_COUNT", "0"),
    ("REFLEX_EVENT_PROCESSOR_MAX_QUEUE_SIZE", "-5"),
    ("REFLEX_EVENT_PROCESSOR_DISABLED", "maybe"),
    ("REFLEX_EVENT_PROCESSOR_ES_BULK_SIZE", "12x"),
    ("SLUICE_MAX_BODY_BYTES", "lots"),
    ("SLUICE_LISTEN", "not-an-address"),
])
def test_bad_config_exits_2(tmp_path, name, value):
    """A bad value stops `serve` before it binds or writes anything: exit 2 and a message
    naming the variable and the value."""
    data = tmp_path / "data"
    data.mkdir()
    p = subprocess.Popen([str(sluice_bin()), "serve"], env=base_env(data, {name: value}),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        out, err = p.communicate(timeout=30 * TIME_FACTOR)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait()
        pytest.fail(f"serve kept running with {name}={value}")
    assert p.returncode == 2, (p.returncode, err)
    assert name in err and value in err, err
    assert not (data / "listen.addr").exists()

    # `sluice config` validates the same way
    c = run_cli(["config"], data, {name: value})
    assert c.returncode == 2, (c.returncode, c.stderr)
    assert name in c.stderr and value in c.stderr, c.stderr


def test_config_shows_sources(tmp_path):
    r = run_cli(["config"], tmp_path, {"REFLEX_EVENT_PROCESSOR_WORKER_COUNT": "3",
                                       "SLUICE_MAX_EVENTS_PER_REQUEST": "777"})
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()

    def line_of(name):
        found = [ln for ln in lines if re.search(rf"\b{name}\b", ln)]
        assert len(found) == 1, (name, r.stdout)
        return found[0]

    wc = line_of("REFLEX_EVENT_PROCESSOR_WORKER_COUNT")
    assert re.search(r"\b3\b", wc) and "environment" in wc, wc
    me = line_of("SLUICE_MAX_EVENTS_PER_REQUEST")
    assert "777" in me and "environment" in me, me
    bulk = line_of("REFLEX_EVENT_PROCESSOR_ES_BULK_SIZE")
    assert "default" in bulk and "environment" not in bulk, bulk

    j = run_cli(["config", "--json"], tmp_path, {"REFLEX_EVENT_PROCESSOR_WORKER_COUNT": "3"})
    assert j.returncode == 0, j.stderr
    conf = json.loads(j.stdout)
    assert conf["REFLEX_EVENT_PROCESSOR_WORKER_COUNT"] == {"value": "3", "source": "environment"}
    assert conf["REFLEX_EVENT_PROCESSOR_ES_BULK_SIZE"]["source"] == "default"

    # an unknown SLUICE_ name is reported (a typo must not pass silently), without failing
    u = run_cli(["config"], tmp_path, {"SLUICE_MAX_BODY_BYTE": "1M"})
    assert u.returncode == 0, u.stderr
    assert "SLUICE_MAX_BODY_BYTE" in u.stderr, u.stderr


def test_cli_works_beside_running_server(servers):
    """org and apikey create work on the data dir of a running server, and the server honours
    the new key at once; the first start wrote a private admin key."""
    srv = servers()
    key_file = srv.data_dir / "admin.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert srv.client().queue_stats()["size"] == 0

    dup = run_cli(["org", "create", "default"], srv.data_dir)
    assert dup.returncode != 0, "the first start must have created org 'default'"

    r = run_cli(["org", "create", "beside"], srv.data_dir)
    assert r.returncode == 0, r.stderr
    k = run_cli(["apikey", "create", "--org", "beside", "--role", "analyst"], srv.data_dir)
    assert k.returncode == 0, k.stderr
    key = json.loads(k.stdout)["key"]
    resp = requests.get(srv.url + API + "/event", headers={"Authorization": f"Bearer {key}"},
                        timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.json()["pagination"]["total_results"] == 0
