"""A minimal asyncio HTTP/1.1 load client: keep-alive connections, one request in flight on each.

It sends prebuilt request bytes and parses only the status line and Content-Length, so it costs
far less per request than httpx and the servers, not the client, set the pace.

    python loadgen.py HOST PORT PATH BODY_JSON CONCURRENCY SECONDS [HEADER ...]   -> one JSON line of results

Each HEADER is a whole header line, such as 'Authorization: Bearer my-...'.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time


def build_request(host: str, path: str, body: bytes, headers: tuple[str, ...] = ()) -> bytes:
    extra = "".join(f"{line}\r\n" for line in headers)
    head = (f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n{extra}"
            f"Content-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def connection(host: str, port: int, request: bytes, deadline: float, latencies: list[float],
                     errors: list[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = head[9:12]
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if status != b"200":
                errors.append(status.decode())
    finally:
        writer.close()


async def run(host: str, port: int, path: str, body: bytes, concurrency: int, seconds: float,
              headers: tuple[str, ...] = ()) -> dict:
    request = build_request(host, path, body, headers)
    latencies: list[float] = []
    errors: list[str] = []
    start = time.perf_counter()
    deadline = start + seconds
    await asyncio.gather(*(connection(host, port, request, deadline, latencies, errors)
                           for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {"requests": len(latencies), "errors": len(errors), "rps": len(latencies) / elapsed,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def main() -> None:
    host, port, path, body, concurrency, seconds = sys.argv[1:7]
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    result = runner(run(host, int(port), path, body.encode(), int(concurrency), float(seconds), tuple(sys.argv[7:])))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
