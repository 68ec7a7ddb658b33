"""Fixtures of the system tests: every test starts its own servers on OS-chosen ports with
their own data directories, and every server is torn down (SIGTERM, then SIGKILL of its whole
process group) whatever the outcome. Sanitizer reports in a server's output fail the test."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from sluice_harness import Server, sluice_bin  # noqa: E402


def pytest_sessionstart(session):
    b = sluice_bin()
    if not b.is_file():
        raise pytest.UsageError(f"sluice binary not found at {b} (set SLUICE_BIN or build it)")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture
def servers(request, tmp_path):
    """A factory: servers(env=..., data_dir=...) starts `sluice serve` and waits until it is
    ready (wait=False to skip). The same data_dir may be started again after a stop."""
    started = []

    def start(env=None, data_dir=None, wait=True, name="data"):
        d = Path(data_dir) if data_dir else tmp_path / name
        srv = Server(d, env=env)
        started.append(srv)
        return srv.start(wait=wait)

    yield start

    reports = []
    for srv in started:
        srv.cleanup()
        reports += srv.sanitizer_reports()
    failed = getattr(request.node, "rep_call", None)
    if failed is not None and failed.failed:
        for srv in started:
            print(f"---- {srv.log_path.name} (tail) ----\n{srv.log_tail(80)}")
    assert not reports, "sanitizer reports in server output:\n" + "\n".join(reports[:20])


@pytest.fixture
def server(servers):
    """One ready server with default settings."""
    return servers()
