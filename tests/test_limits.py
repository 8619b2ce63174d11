"""Request bodies over their route's limit are a 413 before they are read into memory."""

import socket

import pytest


def rss_mib(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def send_raw(port: int, head: bytes, chunks) -> bytes:
    """Send a request head and then body chunks until the server answers; its answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(head)
        sock.settimeout(0.0)
        answer = b""
        for chunk in chunks:
            try:
                answer += sock.recv(65536)
            except BlockingIOError:
                pass
            if answer:
                break
            try:
                sock.setblocking(True)
                sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
            finally:
                sock.setblocking(False)
        sock.settimeout(30)
        while not _complete(answer):
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            answer += data
        return answer


def _complete(answer: bytes) -> bool:
    """Whether `answer` holds a whole response: its head and as many body bytes as it declares."""
    head, found, body = answer.partition(b"\r\n\r\n")
    if not found:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value)
    return True


BODY_MIB = 200
MIB = b"x" * (1 << 20)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_an_oversize_body_is_413_without_the_server_holding_it(server, http, framing):
    pid = http.get("/status").json()["pid"]
    before = rss_mib(pid)
    if framing == "content-length":
        head = (f"POST /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                f"Content-Length: {BODY_MIB << 20}\r\n\r\n").encode()
        chunks = (MIB for _ in range(BODY_MIB))
    else:
        head = (b"POST /v1/flexible/infers HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n")
        chunks = (b"100000\r\n" + MIB + b"\r\n" for _ in range(BODY_MIB))
    answer = send_raw(server.port, head, chunks)
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"at most 16 MiB" in answer and b"MODELYARD_MAX_BODY_MB" in answer
    assert rss_mib(pid) - before < BODY_MIB / 4  # it never held the body
    assert http.get("/status").status_code == 200


def test_a_body_under_the_limit_is_read(http):
    big = {"model": "nope", "args": ["x" * (8 << 20)]}
    response = http.post("/v1/flexible/infers", json=big)
    assert response.status_code == 404  # read and parsed: the model does not exist
