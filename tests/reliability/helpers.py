"""Shared pieces of the reliability tests: stacks, load, process facts.

Each test that breaks something (stops PostgreSQL, kills the proxy, fills the
spool) boots a stack of its own with `migrated_appliance`, so the session's
`appliance` stays healthy for the tests that only send requests.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.cases.helpers import SSE, Stage
from tests.conftest import data_root, require_components
from tests.support import formats
from tests.support.appliance import Appliance
from tests.support.upstream import Script, send

CHAT = "/v1/chat/completions"
CHAT_REQUEST = b'{"model":"mock-1","messages":[{"role":"user","content":"hi"}]}'
STREAM_REQUEST = (
    b'{"model":"mock-1","stream":true,"messages":[{"role":"user","content":"hi"}]}'
)
# Long enough for a request that waits on a slow scripted upstream, short
# enough that a stuck proxy fails the test instead of hanging the suite.
CLIENT_TIMEOUT_S = 30
# How long a restarted proxy may take to pass its health check.
PROXY_START_TIMEOUT_S = 30


@contextmanager
def migrated_appliance(upstream_url: str, **settings: str) -> Iterator[Appliance]:
    """Boot a stack of its own with `settings`, migrate it and yield it."""
    require_components()
    roots = data_root()
    with Appliance(next(roots) / "data", upstream_url, **settings) as running:
        result = running.migrate()
        assert result.returncode == 0, result.stdout + result.stderr
        yield running
    roots.close()


def play_load_scripts(stage: Stage) -> tuple[dict[str, str], dict[str, str]]:
    """Route a JSON reply and a short SSE stream; return the headers of each."""
    body = formats.chat_completion("hello", usage=formats.usage_block(3, 1))
    plain = stage.play(
        "POST",
        CHAT,
        Script(headers=[("Content-Type", "application/json")], steps=[send(body)]),
    )
    events = formats.chat_stream(["hel", "lo"], usage=(3, 2))
    stream = stage.play(
        "POST", CHAT, Script(headers=SSE, steps=[send(event) for event in events])
    )
    return plain, stream


@dataclass
class Outcome:
    """What one client of a load saw for one request."""

    exchange_id: str | None
    status: int | None
    seconds: float
    error: str | None
    stream: bool
    finished_at: float = 0.0


@dataclass
class Load:
    """Requests sent from a thread pool until stopped or a count is reached."""

    url: str
    plain_headers: dict[str, str]
    stream_headers: dict[str, str]
    concurrency: int = 8
    outcomes: list[Outcome] = field(default_factory=list)
    stopped: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, count: int | None = None) -> list[Outcome]:
        """Send `count` requests (or until stop()) and return every outcome."""
        tickets = iter(range(count)) if count is not None else None
        ticket_lock = threading.Lock()

        def next_ticket() -> int | None:
            with ticket_lock:
                if self.stopped.is_set():
                    return None
                if tickets is None:
                    return 0
                return next(tickets, None)

        with ThreadPoolExecutor(self.concurrency) as pool:
            workers = [
                pool.submit(self.client_loop, number, next_ticket)
                for number in range(self.concurrency)
            ]
            for worker in workers:
                worker.result()
        return self.outcomes

    @contextmanager
    def background(self) -> Iterator[Load]:
        """Run the load in a thread for the duration of the block.

        The load stops when the block ends, also when an assert in it fails,
        so that no client thread outlives its test.
        """
        thread = threading.Thread(target=self.run, name="reliability-load")
        thread.start()
        try:
            yield self
        finally:
            self.stopped.set()
            thread.join(CLIENT_TIMEOUT_S * 2)

    def client_loop(self, number: int, next_ticket: Callable[[], int | None]) -> None:
        sent = 0
        with httpx.Client(timeout=CLIENT_TIMEOUT_S) as client:
            while next_ticket() is not None:
                stream = (number + sent) % 2 == 1
                outcome = self.send_one(client, stream)
                sent += 1
                with self.lock:
                    self.outcomes.append(outcome)

    def send_one(self, client: httpx.Client, stream: bool) -> Outcome:
        headers = self.stream_headers if stream else self.plain_headers
        content = STREAM_REQUEST if stream else CHAT_REQUEST
        started = time.monotonic()
        try:
            response = client.post(self.url + CHAT, headers=headers, content=content)
        except httpx.HTTPError as error:
            finished = time.monotonic()
            name = type(error).__name__
            return Outcome(None, None, finished - started, name, stream, finished)
        finished = time.monotonic()
        return Outcome(
            response.headers.get("helicone-id"),
            response.status_code,
            finished - started,
            None,
            stream,
            finished,
        )


def stored_counts(appliance: Appliance, ids: list[str]) -> dict[str, int]:
    """Return how many rows each exchange id has in llmtap.exchange."""
    rows = appliance.query(
        "SELECT id::text AS id, count(*) AS n FROM llmtap.exchange"
        " WHERE id = ANY(%s::uuid[]) GROUP BY id",
        ids,
    )
    return {row["id"]: row["n"] for row in rows}


def wait_stored(
    appliance: Appliance, ids: list[str], timeout_s: float = 60
) -> dict[str, int]:
    """Wait until every id is stored (or the time is up); return the counts."""
    deadline = time.monotonic() + timeout_s
    while True:
        counts = stored_counts(appliance, ids)
        if len(counts) >= len(set(ids)) or time.monotonic() > deadline:
            return counts
        time.sleep(0.2)


def proxy_pid(appliance: Appliance) -> int:
    """Return the pid of the proxy process, as supervisord reports it."""
    result = appliance.supervisorctl("pid", "proxy")
    pid = result.stdout.strip()
    assert pid.isdigit(), f"no proxy pid: {result.stdout!r}"
    assert pid != "0", "the proxy is not running"
    return int(pid)


def wait_proxy(appliance: Appliance, timeout_s: float = PROXY_START_TIMEOUT_S) -> None:
    """Wait until the proxy passes its health check."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            health = httpx.get(f"{appliance.proxy_url}/_llmtap/health", timeout=1)
            if health.status_code == 200:
                return
        except httpx.HTTPError:
            pass
        assert time.monotonic() < deadline, "the proxy did not come back"
        time.sleep(0.1)


def restart_proxy(appliance: Appliance) -> None:
    result = appliance.supervisorctl("restart", "proxy")
    assert result.returncode == 0, result.stdout + result.stderr
    wait_proxy(appliance)


def rss_kib(pid: int) -> int:
    """Return the resident set size of a process (VmRSS), in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS line for pid {pid}")


def process_tree_rss_kib(pid: int) -> int:
    """Return the summed RSS of a process and its children, in KiB.

    The proxy process runs the recorder as a child, and with more than one
    worker uvicorn's workers are children too, so all of them are counted.
    """
    children: list[str] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        children += (task / "children").read_text().split()
    return rss_kib(pid) + sum(rss_kib(int(child)) for child in set(children))


def health(appliance: Appliance) -> dict[str, object]:
    response = httpx.get(f"{appliance.proxy_url}/_llmtap/health", timeout=5)
    assert response.status_code == 200
    return dict(response.json())


def read_dropped_file(appliance: Appliance) -> dict[str, object] | None:
    path = appliance.data_dir / "spool" / "dropped.json"
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError:
        return None


def supervise(appliance: Appliance, action: str, program: str) -> None:
    """Run `supervisorctl action program` and fail the test if it fails."""
    result = appliance.supervisorctl(action, program)
    assert result.returncode == 0, result.stdout + result.stderr


class MemorySampler:
    """Samples the proxy's RSS (with its children) in a thread, every interval."""

    def __init__(self, appliance: Appliance, interval_s: float = 0.5) -> None:
        self.appliance = appliance
        self.interval_s = interval_s
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.sample, name="rss-sampler")
        self.started = time.monotonic()

    def __enter__(self) -> MemorySampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stopped.set()
        self.thread.join(5)

    def sample(self) -> None:
        pid = proxy_pid(self.appliance)
        while not self.stopped.is_set():
            try:
                rss = process_tree_rss_kib(pid)
            except (FileNotFoundError, ProcessLookupError):
                # A restarted proxy has a new pid.
                pid = proxy_pid(self.appliance)
                continue
            self.samples.append((time.monotonic() - self.started, rss))
            self.stopped.wait(self.interval_s)

    @property
    def peak_kib(self) -> int:
        return max(rss for _, rss in self.samples)


def ok_ids(outcomes: list[Outcome]) -> list[str]:
    """Return the Helicone-Id of every request that got a 200."""
    return [o.exchange_id for o in outcomes if o.status == 200 and o.exchange_id]


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]
