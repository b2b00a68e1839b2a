"""Client-side load generation and timing for the benchmarks.

Every number is taken at the client, from `time.perf_counter()` in the
protocol callbacks, and never from a timing header of the server under test.
The client speaks HTTP/1.1 with keep-alive on raw asyncio protocols (uvloop
when installed), so a request costs it a few tens of microseconds of CPU;
`Measurement.client_cpu_us` reports that cost for every run.

Run one target on its own with
`python -m scripts.bench.load --port PORT [--header 'Name: value']`; the
benchmark driver `scripts/bench/run.py` runs several targets interleaved.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import hashlib
import json
import os
import socket
import statistics
import sys
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, cast

from scripts.bench.upstream import EVENT_COUNT, SLOW_GAP_S, run_fast

REQUEST_TIMEOUT_S = 60.0
CONNECT_TIMEOUT_S = 5.0
SEPARATORS = {"json": None, "sse": b"\n\n", "ndjson": b"\n"}
PROMPT_CHARS = 16_000
IMAGE_BODY_BYTES = 5_000_000
# Exchanges a target sends in a row before the next target takes its turn, and
# the fewest turns each target gets in one scenario.
BLOCK_REQUESTS = 20
MIN_TURNS = 5


@dataclass(frozen=True)
class Target:
    """A server to measure: where it listens and what each request must carry."""

    name: str
    port: int
    headers: tuple[tuple[str, str], ...] = ()
    # LiteLLM routes by model name, not path, so it gets one model per route.
    routes_by_model: bool = False
    host: str = "127.0.0.1"


@dataclass(frozen=True)
class Scenario:
    """One kind of request: its path, JSON payload and response framing."""

    name: str
    path: str
    payload: dict[str, Any]
    framing: str
    # Model name that selects this route on a gateway that routes by model;
    # None when such a gateway cannot serve the scenario (native Ollama API).
    gateway_model: str | None = "bench"
    expect_sha256: bool = False


@dataclass
class Sample:
    """Client-side timings of one exchange, in seconds from sending the request."""

    status: int
    latency_s: float
    event_times_s: list[float]
    body: bytes

    @property
    def first_event_s(self) -> float | None:
        return self.event_times_s[0] if self.event_times_s else None


@dataclass
class Measurement:
    """Completed exchanges of a throughput run and what they cost the client."""

    completed: int = 0
    failed: int = 0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def per_second(self) -> float:
        return self.completed / self.wall_s if self.wall_s else 0.0

    @property
    def client_cpu_us(self) -> float:
        return 1e6 * self.cpu_s / self.completed if self.completed else 0.0


def chat_payload(stream: bool, content: str = "Say hello.") -> dict[str, Any]:
    return {
        "model": "bench",
        "messages": [{"role": "user", "content": content}],
        "stream": stream,
    }


def image_payload(total_bytes: int = IMAGE_BODY_BYTES) -> dict[str, Any]:
    """Build a chat request with one inline image, about `total_bytes` long."""
    raw = os.urandom(total_bytes * 3 // 4)
    data_url = "data:image/png;base64," + base64.b64encode(raw).decode()
    content = [
        {"type": "text", "text": "What is in this picture?"},
        {"type": "image_url", "image_url": {"url": data_url}},
    ]
    return {"model": "bench", "messages": [{"role": "user", "content": content}]}


def standard_scenarios() -> dict[str, Scenario]:
    """Build the scenarios every target runs, keyed by name."""
    prompt = ("lorem ipsum dolor sit amet " * (PROMPT_CHARS // 27 + 1))[:PROMPT_CHARS]
    scenarios = [
        Scenario("json", "/v1/chat/completions", chat_payload(False), "json"),
        Scenario("sse", "/v1/chat/completions", chat_payload(True), "sse"),
        Scenario(
            "ndjson", "/api/chat", chat_payload(True), "ndjson", gateway_model=None
        ),
        Scenario(
            "slow-sse",
            "/slow/v1/chat/completions",
            chat_payload(True),
            "sse",
            gateway_model="bench-slow",
        ),
        Scenario(
            "slow-ndjson",
            "/slow/api/chat",
            chat_payload(True),
            "ndjson",
            gateway_model=None,
        ),
        Scenario(
            "prompt-16k", "/v1/chat/completions", chat_payload(False, prompt), "json"
        ),
        Scenario(
            "image-5mb",
            "/echo/v1/chat/completions",
            image_payload(),
            "json",
            gateway_model="bench-echo",
            expect_sha256=True,
        ),
    ]
    return {scenario.name: scenario for scenario in scenarios}


def supports(target: Target, scenario: Scenario) -> bool:
    return not target.routes_by_model or scenario.gateway_model is not None


def encode_request(target: Target, scenario: Scenario) -> bytes:
    """Encode the whole HTTP/1.1 request for `scenario` as sent to `target`."""
    path = scenario.path
    payload = scenario.payload
    if target.routes_by_model:
        path = "/v1/chat/completions"
        payload = {**payload, "model": scenario.gateway_model}
    body = json.dumps(payload, separators=(",", ":")).encode()

    lines = [
        f"POST {path} HTTP/1.1",
        f"Host: {target.host}:{target.port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{name}: {value}" for name, value in target.headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


class ResponseReader:
    """Incremental HTTP/1.1 response parser that timestamps each stream event."""

    def __init__(self, separator: bytes | None, started: float) -> None:
        self.separator = separator
        self.started = started
        self.buffer = bytearray()
        self.body = bytearray()
        self.event_times: list[float] = []
        self.status = 0
        self.length: int | None = None
        self.chunked = False
        self.keep_alive = True
        self.in_body = False
        self.done = False
        self.scan_from = 0

    def feed(self, data: bytes, now: float) -> None:
        self.buffer += data
        if not self.in_body and not self._parse_head():
            return
        if self.chunked:
            self._decode_chunks()
        else:
            self.body += self.buffer
            self.buffer.clear()
            self.done = self.length is not None and len(self.body) >= self.length
        self._mark_events(now)

    def finish_on_close(self, now: float) -> bool:
        """Return True when a body delimited by connection close is complete."""
        if self.in_body and self.length is None and not self.chunked:
            self.done = True
            self._mark_events(now)
        return self.done

    def _parse_head(self) -> bool:
        head_end = self.buffer.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        lines = bytes(self.buffer[:head_end]).decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            value = value.strip().lower()
            if name == "content-length":
                self.length = int(value)
            elif name == "transfer-encoding" and "chunked" in value:
                self.chunked = True
            elif name == "connection" and value == "close":
                self.keep_alive = False
        del self.buffer[: head_end + 4]
        self.in_body = True
        return True

    def _decode_chunks(self) -> None:
        while not self.done:
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                return
            size = int(bytes(self.buffer[:line_end]).split(b";")[0], 16)
            if size == 0:
                # A chunked body ends with "0\r\n", optional trailers and "\r\n".
                if self.buffer.find(b"\r\n\r\n") < 0:
                    return
                self.done = True
                return
            if len(self.buffer) < line_end + 2 + size + 2:
                return
            self.body += self.buffer[line_end + 2 : line_end + 2 + size]
            del self.buffer[: line_end + 2 + size + 2]

    def _mark_events(self, now: float) -> None:
        if self.separator is None:
            return
        while True:
            found = self.body.find(self.separator, self.scan_from)
            if found < 0:
                return
            if found > self.scan_from:
                self.event_times.append(now - self.started)
            self.scan_from = found + len(self.separator)


class ClientProtocol(asyncio.Protocol):
    """One keep-alive connection that carries one exchange at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.reader: ResponseReader | None = None
        self.waiter: asyncio.Future[float] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.reader is None or self.waiter is None:
            return
        self.reader.feed(data, now)
        if self.reader.done and not self.waiter.done():
            self.waiter.set_result(now)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if self.reader is None or waiter is None or waiter.done():
            return
        if self.reader.finish_on_close(time.perf_counter()):
            waiter.set_result(time.perf_counter())
        else:
            waiter.set_exception(ConnectionError("connection closed mid-response"))


class Client:
    """A keep-alive HTTP/1.1 client bound to one target."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.protocol: ClientProtocol | None = None

    async def exchange(self, request: bytes, framing: str) -> Sample:
        protocol = await self._connection()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[float] = loop.create_future()
        started = time.perf_counter()
        reader = ResponseReader(SEPARATORS[framing], started)
        protocol.reader = reader
        protocol.waiter = waiter

        assert protocol.transport is not None
        protocol.transport.write(request)
        try:
            finished = await asyncio.wait_for(waiter, REQUEST_TIMEOUT_S)
        except (TimeoutError, ConnectionError):
            self.close()
            raise

        protocol.reader = None
        protocol.waiter = None
        if not reader.keep_alive:
            self.close()
        latency = finished - started
        return Sample(reader.status, latency, reader.event_times, bytes(reader.body))

    def close(self) -> None:
        if self.protocol is not None and self.protocol.transport is not None:
            self.protocol.transport.close()
        self.protocol = None

    async def _connection(self) -> ClientProtocol:
        if self.protocol is not None and not self.protocol.closed:
            return self.protocol
        loop = asyncio.get_running_loop()
        connect = loop.create_connection(
            ClientProtocol, self.target.host, self.target.port
        )
        _, protocol = await asyncio.wait_for(connect, CONNECT_TIMEOUT_S)
        self.protocol = protocol
        return protocol


def check_sample(
    sample: Sample, scenario: Scenario, request_body: bytes | None
) -> str | None:
    """Return why `sample` is not a correct response to `scenario`, or None.

    `request_body` is what the upstream must have seen byte for byte, or None
    for a gateway that re-encodes requests.
    """
    if sample.status != 200:
        return f"status {sample.status}: {sample.body[:200]!r}"
    if scenario.framing != "json" and len(sample.event_times_s) < EVENT_COUNT:
        return f"{len(sample.event_times_s)} events, expected at least {EVENT_COUNT}"
    if scenario.expect_sha256 and request_body is not None:
        digest = hashlib.sha256(request_body).hexdigest()
        if f"sha256={digest}".encode() not in sample.body:
            return "the upstream saw a different request body than the client sent"
    return None


def forwarded_body(target: Target, request: bytes) -> bytes | None:
    """Return the body the upstream must receive unchanged from `target`."""
    if target.routes_by_model:
        return None
    return request[request.index(b"\r\n\r\n") + 4 :]


async def run_throughput(
    target: Target,
    scenario: Scenario,
    concurrency: int,
    duration_s: float,
) -> Measurement:
    """Keep `concurrency` exchanges in flight for `duration_s`; count completions."""
    request = encode_request(target, scenario)
    body = forwarded_body(target, request)
    clients = [Client(target) for _ in range(concurrency)]
    result = Measurement()
    deadline = time.perf_counter() + duration_s

    async def worker(client: Client) -> None:
        while time.perf_counter() < deadline:
            try:
                sample = await client.exchange(request, scenario.framing)
            except (OSError, TimeoutError, ConnectionError) as error:
                _record_failure(result, repr(error))
                continue
            problem = check_sample(sample, scenario, body)
            if problem is None:
                result.completed += 1
            else:
                _record_failure(result, problem)

    wall, cpu = await _timed(asyncio.gather(*(worker(c) for c in clients)))
    for client in clients:
        client.close()
    result.wall_s = wall
    result.cpu_s = cpu
    return result


async def run_count(
    target: Target, scenarios: list[Scenario], concurrency: int, total: int
) -> int:
    """Send `total` exchanges with `concurrency` in flight, cycling `scenarios`.

    Returns the number of exchanges that failed; the rest succeeded.
    """
    requests = [(s, encode_request(target, s)) for s in scenarios]
    clients = [Client(target) for _ in range(concurrency)]
    remaining = total
    failed = 0

    async def worker(client: Client, offset: int) -> None:
        nonlocal remaining, failed
        index = offset
        while remaining > 0:
            remaining -= 1
            scenario, request = requests[index % len(requests)]
            index += 1
            try:
                sample = await client.exchange(request, scenario.framing)
            except (OSError, TimeoutError, ConnectionError):
                failed += 1
                continue
            if check_sample(sample, scenario, None) is not None:
                failed += 1

    await asyncio.gather(*(worker(c, i) for i, c in enumerate(clients)))
    for client in clients:
        client.close()
    return failed


def _record_failure(result: Measurement, problem: str) -> None:
    result.failed += 1
    if len(result.errors) < 5:
        result.errors.append(problem)


async def _timed(awaitable: Awaitable[Any]) -> tuple[float, float]:
    # Collection pauses would land on whichever target happens to be running,
    # so the collector stays off while a measurement runs.
    gc.collect()
    gc.disable()
    wall_start = time.perf_counter()
    cpu_start = time.process_time()
    try:
        await awaitable
    finally:
        gc.enable()
    return time.perf_counter() - wall_start, time.process_time() - cpu_start


async def run_interleaved(
    targets: list[Target],
    scenario: Scenario,
    count: int,
    check: bool = True,
) -> dict[str, list[Sample]]:
    """Send `count` exchanges to each target one at a time, rotating targets.

    Targets take turns in blocks of up to BLOCK_REQUESTS exchanges. Taking turns
    spreads the machine's changing speed evenly over every target, which makes
    the differences between them trustworthy. Blocks rather than single
    requests keep one target's work after its response from landing on the
    next target's request. LiteLLM keeps working for milliseconds after a stream.
    """
    chosen = [target for target in targets if supports(target, scenario)]
    requests = {t.name: encode_request(t, scenario) for t in chosen}
    bodies = {t.name: forwarded_body(t, requests[t.name]) for t in chosen}
    clients = {t.name: Client(t) for t in chosen}
    samples: dict[str, list[Sample]] = {t.name: [] for t in chosen}

    block = max(1, min(BLOCK_REQUESTS, count // MIN_TURNS))

    async def loop() -> None:
        for turn, start in enumerate(range(0, count, block)):
            offset = turn % len(chosen)
            for target in chosen[offset:] + chosen[:offset]:
                for _ in range(min(block, count - start)):
                    await send_one(target)

    async def send_one(target: Target) -> None:
        request = requests[target.name]
        sample = await clients[target.name].exchange(request, scenario.framing)
        problem = check_sample(sample, scenario, bodies[target.name])
        if check and problem is not None:
            raise RuntimeError(f"{target.name} {scenario.name}: {problem}")
        samples[target.name].append(sample)

    await _timed(loop())
    for client in clients.values():
        client.close()
    return samples


def percentile(values: list[float], fraction: float) -> float:
    """Return the `fraction` quantile of `values` with linear interpolation."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    position = fraction * (len(ordered) - 1)
    lower = int(position)
    upper = min(lower + 1, len(ordered) - 1)
    weight = position - lower
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


def latency_summary(samples: list[Sample], gaps: bool = False) -> dict[str, float]:
    """Summarise latency, first-event time and, for paced streams, event gaps.

    Every value is in milliseconds. The gap error is the distance of each gap
    between two content events from the upstream's pace of SLOW_GAP_S.
    """
    latencies = [1000 * s.latency_s for s in samples]
    summary = {
        "p50": percentile(latencies, 0.50),
        "p95": percentile(latencies, 0.95),
        "p99": percentile(latencies, 0.99),
    }
    firsts = [1000 * s.first_event_s for s in samples if s.first_event_s is not None]
    if firsts:
        summary["ttft_p50"] = percentile(firsts, 0.50)
        summary["ttft_p99"] = percentile(firsts, 0.99)
    content_gaps = content_gaps_ms(samples) if gaps else []
    if content_gaps:
        summary["gap_p50"] = statistics.median(content_gaps)
        deviations = [abs(gap - 1000 * SLOW_GAP_S) for gap in content_gaps]
        summary["gap_dev_p99"] = percentile(deviations, 0.99)
    return summary


def content_gaps_ms(samples: list[Sample]) -> list[float]:
    """Return the gaps between consecutive content events of each stream."""
    gaps = []
    for sample in samples:
        times = sample.event_times_s[:EVENT_COUNT]
        gaps += [1000 * (b - a) for a, b in zip(times, times[1:], strict=False)]
    return gaps


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Measure one target at the client.")
    parser.add_argument("--port", type=int, required=True, help="Target port.")
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        help="Extra request header 'Name: value'; repeat for more.",
    )
    parser.add_argument(
        "--requests", type=int, default=300, help="Exchanges per latency scenario."
    )
    parser.add_argument(
        "--duration", type=float, default=3.0, help="Seconds per throughput run."
    )
    return parser.parse_args(argv)


async def measure_one(args: argparse.Namespace) -> dict[str, Any]:
    headers = tuple(
        (name.strip(), value.strip())
        for name, _, value in (h.partition(":") for h in args.header)
    )
    target = Target("target", args.port, headers)
    scenarios = standard_scenarios()
    report: dict[str, Any] = {}
    for name in ("json", "sse", "ndjson", "slow-sse"):
        count = args.requests if not name.startswith("slow") else 20
        samples = await run_interleaved([target], scenarios[name], count)
        report[name] = latency_summary(samples["target"], name.startswith("slow"))
    for name in ("json", "sse"):
        measurement = await run_throughput(target, scenarios[name], 10, args.duration)
        report[f"{name}-c10"] = {
            "per_second": measurement.per_second,
            "failed": measurement.failed,
            "client_cpu_us": measurement.client_cpu_us,
        }
    return report


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    holder: dict[str, Any] = {}

    async def go() -> None:
        holder["report"] = await measure_one(args)

    run_fast(go())
    print(json.dumps(holder["report"], indent=2))


if __name__ == "__main__":
    main()
