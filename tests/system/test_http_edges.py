"""HTTP edge cases with raw sockets: Expect: 100-continue, chunked bodies, a client that
vanishes mid-body, slow clients holding connections, unknown methods and paths."""

import json
import socket
import time

import requests

from sluice_harness import API, TIME_FACTOR, make_event, make_events, new_prefix, wait_for


def connect(srv):
    host, port = srv.addr.split(":")
    s = socket.create_connection((host, int(port)), timeout=30 * TIME_FACTOR)
    return s


def read_response(s):
    """Reads one HTTP/1.1 response with a Content-Length; returns (status, headers, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, rest = data.split(b"\r\n\r\n", 1)
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:])}
    n = int(headers.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        assert chunk, "connection closed mid-body"
        rest += chunk
    return status, headers, rest[:n]


def bulk_head(srv, length, extra=""):
    return (f"POST {API}/event/_bulk HTTP/1.1\r\nHost: {srv.addr}\r\n"
            f"Authorization: Bearer {srv.admin_key()}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {length}\r\n{extra}\r\n").encode()


def test_expect_continue_and_chunked(server):
    c = server.client()
    p = new_prefix("edge")
    body = json.dumps({"events": make_events(p, 4)}).encode()
    s = connect(server)
    try:
        s.sendall(bulk_head(server, len(body), "Expect: 100-continue\r\n"))
        interim = s.recv(1024)
        assert interim.startswith(b"HTTP/1.1 100"), interim
        s.sendall(body)
        status, _, resp = read_response(s)
        assert status == 200 and json.loads(resp)["accepted"] == 4, resp
        # the same connection serves the next request (keep-alive)
        s.sendall(f"GET /health HTTP/1.1\r\nHost: {server.addr}\r\n\r\n".encode())
        assert read_response(s)[0] == 200
    finally:
        s.close()

    # Expect: 100-continue with a body over the limit is refused before the body is sent
    s = connect(server)
    try:
        s.sendall(bulk_head(server, 10 ** 9, "Expect: 100-continue\r\n"))
        status, _, resp = read_response(s)
        assert status == 413, resp
    finally:
        s.close()

    body2 = json.dumps({"events": make_events(p, 3, start=10)}).encode()
    r = c.s.post(server.url + API + "/event/_bulk", data=iter([body2[:50], body2[50:]]),
                 headers={"Content-Type": "application/json"}, timeout=30)
    assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
    c.wait_stored(7)


def test_client_vanishes_mid_body(server):
    """Requests whose client goes away mid-body store nothing and are not left "in flight":
    SIGTERM afterwards still exits at once instead of waiting out SLUICE_DRAIN_TIMEOUT."""
    c = server.client()
    p = new_prefix("vanish")
    body = json.dumps({"events": make_events(p, 20)}).encode()
    for cut in (1, len(body) // 2, len(body) - 1) * 4:
        s = connect(server)
        s.sendall(bulk_head(server, len(body)) + body[:cut])
        s.close()
    # a request that sends a body shorter than its Content-Length and then stalls: the
    # server may wait, but nothing of it is stored
    stalled = connect(server)
    stalled.sendall(bulk_head(server, len(body)) + body[:-1])
    try:
        c.ingest([make_event(f"{p}-barrier")])
        c.wait_stored(1)
        assert [e["reference"] for e in c.list()["events"]] == [f"{p}-barrier"]
    finally:
        stalled.close()
    assert c.queue_stats()["events"]["accepted"] == 1
    c.close()
    # every connection is closed now, so nothing is in flight
    wait_for("the api to see the closed connections",
             lambda: requests.get(server.url + "/health", timeout=10).status_code == 200, 10)
    t0 = time.monotonic()
    assert server.terminate(timeout=60) == 0
    took = time.monotonic() - t0
    assert took < 5 * TIME_FACTOR, (
        f"SIGTERM took {took:.1f}s with no request in flight: aborted requests were still "
        f"counted ({[ln for ln in server.log_text().splitlines() if 'in flight' in ln]})")


def test_slow_clients_do_not_block_others(server):
    """Connections that send half a request and wait occupy no thread: /health and ingest
    still answer at once."""
    p = new_prefix("slow")
    held = []
    try:
        for i in range(40):
            s = connect(server)
            s.sendall(f"GET /health HTTP/1.1\r\nHost: {server.addr}\r\nX-Slow: ".encode())
            held.append(s)
        for i in range(20):
            s = connect(server)
            s.sendall(bulk_head(server, 100000) + b'{"events": [')
            held.append(s)
        t0 = time.monotonic()
        assert requests.get(server.url + "/health", timeout=10).status_code == 200
        c = server.client()
        c.ingest(make_events(p, 5))
        c.wait_stored(5, timeout=30)
        assert time.monotonic() - t0 < 10 * TIME_FACTOR
    finally:
        for s in held:
            s.close()


def test_methods_paths_and_headers(server):
    key = {"Authorization": f"Bearer {server.admin_key()}"}
    u = server.url
    assert requests.get(u + "/no/such/path", timeout=30).status_code == 404
    assert requests.get(u + API + "/event/_bulk", headers=key, timeout=30).status_code == 405
    assert requests.delete(u + API + "/event/_bulk", headers=key, timeout=30).status_code == 405
    assert requests.post(u + "/health", timeout=30).status_code == 405
    r = requests.get(u + API + "/event/queue_stats", headers=key, timeout=30)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("application/json")
    # an oversized header block is refused, and the server keeps serving
    s = connect(server)
    try:
        s.sendall(f"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {'a' * 200000}\r\n\r\n".encode())
        data = s.recv(1024)
        assert data == b"" or data.split()[1] in (b"400", b"413", b"431"), data[:100]
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    wait_for("server still healthy",
             lambda: requests.get(u + "/health", timeout=10).status_code == 200, 10)
