"""A real Apache Kafka broker for the system tests: one combined KRaft node (scripts/kafka.sh) on
OS-chosen loopback ports in its own temporary directory, ready when it answers a Metadata
request naming itself, and killed with its directory removed whatever the outcome.

Use it from a test module (conftest.py does not load it, so import the fixture by name):

    from kafka_fixture import kafka_broker  # noqa: F401  (a fixture)

    def test_x(kafka_broker):      # "127.0.0.1:PORT", one broker per test module
        ...

A test that stops and restarts its broker, or needs extra listeners (SASL, SSL), starts its own
KafkaBroker(dir, extra_properties=..., format_args=...) and calls cleanup() in a finally block.

The broker's jars come from Maven Central (scripts/kafka.sh fetch, which scripts/setup.sh runs);
if they cannot be had the test fails with the reason, it is never skipped.
"""

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from sluice_harness import REPO_ROOT, TIME_FACTOR, group_pids, wait_for

KAFKA_SH = REPO_ROOT / "scripts" / "kafka.sh"
START_TIMEOUT = 60  # seconds, times SLUICE_TEST_TIME_FACTOR; a start takes ~3 s on 2 cores
FETCH_TIMEOUT = 600


def fetch_kafka():
    """Makes sure the broker's jars are in the cache (a no-op once they are) and returns the libs
    directory. Fails the calling test, with Maven's output, if they cannot be fetched."""
    try:
        r = subprocess.run(["bash", str(KAFKA_SH), "fetch"], capture_output=True, text=True,
                           timeout=FETCH_TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/kafka.sh fetch took more than {FETCH_TIMEOUT}s (Maven Central)",
                    pytrace=False)
    if r.returncode != 0:
        pytest.fail("the Kafka broker's jars could not be fetched (scripts/kafka.sh fetch, run by "
                    f"scripts/setup.sh; needs java and mvn):\n{r.stderr[-4000:]}", pytrace=False)
    return Path(r.stdout.strip().splitlines()[-1])


def free_port():
    """A loopback port the OS just handed out (free now; the broker binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def metadata_brokers(host, port, timeout=2.0):
    """Sends one Metadata v1 request for no topics and returns the brokers it names as
    {node_id: (host, port)}; None if the broker does not answer (yet)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            client_id = b"sluice-test"
            # header v1: api_key=3 (Metadata), api_version=1, correlation_id, client_id;
            # body: topics = [] (an empty array: no topics, just the cluster).
            req = struct.pack(">hhih", 3, 1, 7, len(client_id)) + client_id + struct.pack(">i", 0)
            s.sendall(struct.pack(">i", len(req)) + req)
            size = struct.unpack(">i", _recv_exact(s, 4))[0]
            buf = _recv_exact(s, size)
    except (OSError, struct.error, EOFError):
        return None
    corr, n = struct.unpack_from(">ii", buf, 0)
    if corr != 7:
        return None
    pos, brokers = 8, {}
    for _ in range(n):
        node_id, hlen = struct.unpack_from(">ih", buf, pos)
        pos += 6
        bhost = buf[pos:pos + hlen].decode()
        pos += hlen
        bport, rlen = struct.unpack_from(">ih", buf, pos)
        pos += 6 + max(rlen, 0)
        brokers[node_id] = (bhost, bport)
    return brokers


def _recv_exact(s, n):
    buf = b""
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise EOFError("connection closed")
        buf += chunk
    return buf


class KafkaBroker:
    """One broker process (scripts/kafka.sh start, which execs java) in its own session, so
    the whole process group can be killed. The same directory can be started again after a
    stop (its data is kept); ports are chosen on the first start and kept."""

    def __init__(self, directory, extra_properties=None, format_args=None):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "broker.log"
        self.extra_properties = extra_properties
        self.format_args = list(format_args or [])
        self.port = None
        self.controller_port = None
        self.proc = None
        self.log = None

    @property
    def bootstrap(self):
        return f"127.0.0.1:{self.port}"

    def start(self, timeout=START_TIMEOUT):
        """Starts the broker and waits until it is ready; returns self. Retries with new ports
        if one was taken in the moment between choosing and binding it."""
        fetch_kafka()
        if self.extra_properties is not None:
            (self.dir / "extra.properties").write_text(self.extra_properties)
        if self.format_args:
            (self.dir / "format.args").write_text("".join(a + "\n" for a in self.format_args))
        fresh_ports = self.port is None
        for attempt in range(3):
            if fresh_ports:
                self.port, self.controller_port = free_port(), free_port()
            self._spawn()
            try:
                self._wait_ready(timeout)
                return self
            except AssertionError:
                if fresh_ports and attempt < 2 and "Address already in use" in self.log_tail():
                    self.kill()
                    continue
                raise
        return self

    def _spawn(self):
        if self.log is None or self.log.closed:
            self.log = open(self.log_path, "ab")
        self.log.write(f"\n==== start {time.strftime('%H:%M:%S')} ports {self.port} "
                       f"{self.controller_port} ====\n".encode())
        self.log.flush()
        self.proc = subprocess.Popen(
            ["bash", str(KAFKA_SH), "start", str(self.dir), str(self.port),
             str(self.controller_port)],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, cwd=str(self.dir))

    def _wait_ready(self, timeout):
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"the Kafka broker exited with {self.proc.returncode} "
                                     f"before it was ready:\n{self.log_tail()}")
            brokers = metadata_brokers("127.0.0.1", self.port)
            return brokers is not None and brokers.get(1) == ("127.0.0.1", self.port)
        try:
            wait_for(f"the Kafka broker on {self.bootstrap} to answer Metadata", ready, timeout,
                     interval=0.1)
        except AssertionError as e:
            if self.proc.poll() is None:  # alive but not answering: say what it logged
                raise AssertionError(f"{e}\n{self.log_tail()}") from None
            raise

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM (a controlled shutdown), then SIGKILL of the process group if it lingers."""
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout * TIME_FACTOR)
            except subprocess.TimeoutExpired:
                pass
        self.kill()

    def kill(self):
        """SIGKILL the broker's process group and wait until it is gone."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        wait_for("the Kafka broker's processes to disappear",
                 lambda: not group_pids(self.proc.pid), 30)

    def cleanup(self):
        """Teardown: stop the broker if it runs (quickly: SIGKILL, the data is thrown away)."""
        self.kill()
        if self.log is not None:
            self.log.close()

    def log_tail(self, n=60):
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return ""
        return "\n".join(lines[-n:])


@pytest.fixture(scope="module")
def kafka_broker():
    """A ready broker for the test module; yields its bootstrap address "127.0.0.1:PORT"."""
    directory = tempfile.mkdtemp(prefix="sluice-kafka-")
    broker = KafkaBroker(directory)
    try:
        broker.start()
        yield broker.bootstrap
    finally:
        broker.cleanup()
        shutil.rmtree(directory, ignore_errors=True)
