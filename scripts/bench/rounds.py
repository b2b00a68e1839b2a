"""One measurement round over every target, and the appliance-only phases.

A round runs each scenario against all targets back to back: latency
scenarios let the targets take turns in blocks of requests, throughput runs
rotate the order of targets. Results are `{metric: {target: value}}` in milliseconds,
exchanges per second or megabytes, as each metric name states.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from scripts.bench import load
from scripts.bench.appliance import (
    POSTGRES_PROGRAM,
    Appliance,
    RowSampler,
    wait_for_rows,
)

Results = dict[str, dict[str, float]]

PERSIST_TIMEOUT_S = 120.0
WRK_SCRIPT = """\
wrk.method = "POST"
wrk.body = {body}
wrk.headers["Content-Type"] = "application/json"
"""


@dataclass(frozen=True)
class Plan:
    """How much work each part of a run does."""

    rounds: int
    latency_requests: int
    stream_requests: int
    slow_requests: int
    prompt_requests: int
    image_requests: int
    throughput_s: float
    soak_exchanges: int
    outage_exchanges: int
    use_wrk: bool


FULL_PLAN = Plan(
    rounds=3,
    latency_requests=1000,
    stream_requests=300,
    slow_requests=30,
    prompt_requests=100,
    image_requests=10,
    throughput_s=3.0,
    soak_exchanges=20_000,
    outage_exchanges=2_000,
    use_wrk=True,
)
QUICK_PLAN = Plan(
    rounds=1,
    latency_requests=300,
    stream_requests=100,
    slow_requests=5,
    prompt_requests=20,
    image_requests=3,
    throughput_s=1.5,
    soak_exchanges=1_000,
    outage_exchanges=0,
    use_wrk=False,
)


def put(results: Results, metric: str, target: str, value: float) -> None:
    results.setdefault(metric, {})[target] = value


async def measure_round(targets: list[load.Target], plan: Plan) -> Results:
    """Run every scenario once against all targets; return the metrics."""
    scenarios = load.standard_scenarios()
    results: Results = {}
    await _latency(results, targets, scenarios, plan)
    await _streams(results, targets, scenarios, plan)
    await _large_bodies(results, targets, scenarios, plan)
    await _throughput(results, targets, scenarios, plan)
    if plan.use_wrk and shutil.which("wrk"):
        _wrk(results, targets, scenarios["json"], plan.throughput_s)
    return results


async def _latency(
    results: Results,
    targets: list[load.Target],
    scenarios: dict[str, load.Scenario],
    plan: Plan,
) -> None:
    samples = await load.run_interleaved(
        targets, scenarios["json"], plan.latency_requests
    )
    for name, target_samples in samples.items():
        summary = load.latency_summary(target_samples)
        for key in ("p50", "p95", "p99"):
            put(results, f"json c1 {key} ms", name, summary[key])


async def _streams(
    results: Results,
    targets: list[load.Target],
    scenarios: dict[str, load.Scenario],
    plan: Plan,
) -> None:
    for framing in ("sse", "ndjson"):
        samples = await load.run_interleaved(
            targets, scenarios[framing], plan.stream_requests
        )
        for name, target_samples in samples.items():
            summary = load.latency_summary(target_samples)
            put(results, f"{framing} ttft p50 ms", name, summary["ttft_p50"])
            put(results, f"{framing} ttft p99 ms", name, summary["ttft_p99"])
            put(results, f"{framing} stream p50 ms", name, summary["p50"])

    for framing in ("sse", "ndjson"):
        samples = await load.run_interleaved(
            targets, scenarios[f"slow-{framing}"], plan.slow_requests
        )
        for name, target_samples in samples.items():
            summary = load.latency_summary(target_samples, gaps=True)
            put(results, f"slow {framing} gap p50 ms", name, summary["gap_p50"])
            put(
                results,
                f"slow {framing} gap error p99 ms",
                name,
                summary["gap_dev_p99"],
            )


async def _large_bodies(
    results: Results,
    targets: list[load.Target],
    scenarios: dict[str, load.Scenario],
    plan: Plan,
) -> None:
    for scenario_name, count in (
        ("prompt-16k", plan.prompt_requests),
        ("image-5mb", plan.image_requests),
    ):
        samples = await load.run_interleaved(targets, scenarios[scenario_name], count)
        for name, target_samples in samples.items():
            summary = load.latency_summary(target_samples)
            put(results, f"{scenario_name} p50 ms", name, summary["p50"])


async def _throughput(
    results: Results,
    targets: list[load.Target],
    scenarios: dict[str, load.Scenario],
    plan: Plan,
) -> None:
    runs = [(10, "json"), (10, "sse"), (50, "json"), (50, "sse")]
    for index, (concurrency, scenario_name) in enumerate(runs):
        offset = index % len(targets)
        for target in targets[offset:] + targets[:offset]:
            measurement = await load.run_throughput(
                target, scenarios[scenario_name], concurrency, plan.throughput_s
            )
            label = f"{scenario_name} c{concurrency}"
            put(results, f"{label} per s", target.name, measurement.per_second)
            put(results, f"{label} failed", target.name, measurement.failed)
            put(
                results,
                f"{label} client cpu us",
                target.name,
                measurement.client_cpu_us,
            )
            # A pause lets the previous target's sockets and queues settle.
            await asyncio.sleep(0.2)


def _wrk(
    results: Results,
    targets: list[load.Target],
    scenario: load.Scenario,
    duration_s: float,
) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as workdir:
        for target in targets:
            request = load.encode_request(target, scenario)
            body = request[request.index(b"\r\n\r\n") + 4 :].decode()
            script = Path(workdir) / f"{target.name}.lua"
            script.write_text(WRK_SCRIPT.format(body=_lua_string(body)))
            for concurrency in (10, 50):
                rate = _run_wrk(target, script, concurrency, duration_s)
                put(results, f"json c{concurrency} wrk per s", target.name, rate)


def _lua_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _run_wrk(
    target: load.Target, script: Path, concurrency: int, duration_s: float
) -> float:
    path = "/v1/chat/completions"
    command = [
        "wrk", "-t", "1", "-c", str(concurrency), "-d", f"{max(1, round(duration_s))}s",
        "-s", str(script),
    ]  # fmt: skip
    for name, value in target.headers:
        command += ["-H", f"{name}: {value}"]
    command.append(f"http://{target.host}:{target.port}{path}")
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=duration_s + 30
    )
    for line in completed.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            return float(line.split()[1])
    # wrk is a second opinion on the client's own numbers, so a failure of it
    # leaves a gap in the table instead of ending the run.
    print(
        f"wrk failed on {target.name} (exit {completed.returncode}): "
        f"{completed.stderr.strip() or completed.stdout.strip()}",
        file=sys.stderr,
    )
    return math.nan


async def soak(
    appliance: Appliance, target: load.Target, exchanges: int, results: Results
) -> None:
    """Send `exchanges` at concurrency 10, half JSON and half SSE, and measure
    the proxy's memory afterwards and how fast the rows reached Postgres."""
    scenarios = load.standard_scenarios()
    before = appliance.count_exchanges()
    with RowSampler(appliance) as sampler:
        started = time.perf_counter()
        failed = await load.run_count(
            target, [scenarios["json"], scenarios["sse"]], 10, exchanges
        )
        sent_s = time.perf_counter() - started
        await asyncio.to_thread(
            wait_for_rows, appliance, before + exchanges - failed, PERSIST_TIMEOUT_S
        )
        stored_s = time.perf_counter() - started

    put(results, "soak exchanges", target.name, exchanges)
    put(results, "soak failed", target.name, failed)
    put(results, "soak sent per s", target.name, exchanges / sent_s)
    put(results, "soak persisted per s", target.name, (exchanges - failed) / stored_s)
    put(results, "soak persisted peak per s", target.name, sampler.peak_rate())
    put(results, "proxy rss after soak MB", target.name, _rss_mb(appliance))
    put(results, "proxy tree rss after soak MB", target.name, _rss_mb(appliance, True))
    pss = appliance.proxy_tree_pss_bytes() / 1e6
    put(results, "proxy tree pss after soak MB", target.name, pss)


async def outage(
    appliance: Appliance, target: load.Target, exchanges: int, results: Results
) -> None:
    """Stop Postgres, send `exchanges`, then restart it and time the catch-up."""
    scenarios = load.standard_scenarios()
    before = appliance.count_exchanges()
    await asyncio.to_thread(appliance.stop_program, POSTGRES_PROGRAM)

    peak_rss = peak_tree_rss = 0.0
    done = asyncio.Event()

    async def watch_memory() -> None:
        nonlocal peak_rss, peak_tree_rss
        while not done.is_set():
            peak_rss = max(peak_rss, _rss_mb(appliance))
            peak_tree_rss = max(peak_tree_rss, _rss_mb(appliance, True))
            await asyncio.sleep(0.2)

    watcher = asyncio.create_task(watch_memory())
    try:
        failed = await load.run_count(target, [scenarios["json"]], 10, exchanges)
    finally:
        done.set()
        await watcher

    # The clock starts before PostgreSQL does, so the catch-up time includes
    # its start and the writer's retry delay: the rate is a lower bound.
    with RowSampler(appliance) as sampler:
        started = time.perf_counter()
        await asyncio.to_thread(appliance.start_program, POSTGRES_PROGRAM)
        await asyncio.to_thread(
            wait_for_rows, appliance, before + exchanges - failed, PERSIST_TIMEOUT_S
        )
        caught_up_s = time.perf_counter() - started

    put(results, "outage exchanges", target.name, exchanges)
    put(results, "outage failed", target.name, failed)
    put(results, "proxy rss during outage MB", target.name, peak_rss)
    put(results, "proxy tree rss during outage MB", target.name, peak_tree_rss)
    put(results, "outage catch-up s", target.name, caught_up_s)
    put(
        results,
        "outage catch-up per s",
        target.name,
        (exchanges - failed) / caught_up_s,
    )
    put(results, "outage catch-up peak per s", target.name, sampler.peak_rate())


def idle_memory(appliance: Appliance, target: load.Target, results: Results) -> None:
    put(results, "proxy rss idle MB", target.name, _rss_mb(appliance))
    put(results, "proxy tree rss idle MB", target.name, _rss_mb(appliance, True))
    pss = appliance.proxy_tree_pss_bytes() / 1e6
    put(results, "proxy tree pss idle MB", target.name, pss)


def _rss_mb(appliance: Appliance, children: bool = False) -> float:
    return appliance.proxy_rss_bytes(children) / 1e6
