"""Benchmark llmtap side by side with a direct connection, nginx and LiteLLM.

Usage (as root, from the repository root):

    python -m scripts.bench.run                  # full run, about ten minutes
    python -m scripts.bench.run --quick          # a few seconds per target
    python -m scripts.bench.run --litellm /work/litellm-venv

The run starts its own upstream (scripts/bench/upstream.py), a bare nginx
reverse proxy, the whole appliance (`python -m app.boot`) and, when given a
venv, LiteLLM's proxy, all on free ports of 127.0.0.1. It prints markdown
tables with the median of each metric over the rounds. `--quick` also checks
the ratios of llmtap to direct measured in the same run and exits with 1 when
one is past its bound.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from scripts.bench import load, report, rounds
from scripts.bench.appliance import Appliance, appliance_missing, start_appliance
from scripts.bench.servers import (
    REPO_ROOT,
    Server,
    start_litellm,
    start_nginx,
    start_upstream,
)
from scripts.bench.upstream import run_fast

# Bounds of --quick, generous so that only a real regression trips them on a
# noisy 2-core machine. In quick runs there the proxy's p50 was 8-17 times the
# direct one and its JSON throughput at concurrency 10 was 1/50 to 1/100 of it.
QUICK_MAX_LATENCY_RATIO = 60.0
QUICK_MIN_THROUGHPUT_RATIO = 1 / 250
QUICK_GAP_RATIO_RANGE = (0.8, 1.25)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench.run",
        description="Benchmark llmtap against direct, nginx and LiteLLM.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="Short run for CI that checks llmtap-to-direct ratios.",
    )
    parser.add_argument(
        "--litellm",
        type=Path,
        metavar="VENV",
        help="Virtual environment with 'litellm[proxy]' installed.",
    )
    parser.add_argument(
        "--no-llmtap",
        action="store_true",
        help="Measure only direct, nginx and LiteLLM.",
    )
    parser.add_argument("--rounds", type=int, help="Number of measurement rounds.")
    parser.add_argument(
        "--soak", type=int, help="Exchanges sent in the soak phase (0 skips it)."
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="Write every round's raw results."
    )
    parser.add_argument(
        "--keep", action="store_true", help="Keep the temporary directory and logs."
    )
    return parser.parse_args(argv)


def choose_plan(args: argparse.Namespace) -> rounds.Plan:
    plan = rounds.QUICK_PLAN if args.quick else rounds.FULL_PLAN
    if args.rounds is not None:
        plan = replace(plan, rounds=args.rounds)
    if args.soak is not None:
        plan = replace(plan, soak_exchanges=args.soak)
    return plan


class Run:
    """The servers of one benchmark run and the targets that reach them."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.servers: list[Server] = []
        self.appliance: Appliance | None = None
        self.targets: list[load.Target] = []
        self.load_before = load_average()

    def start(self, args: argparse.Namespace) -> None:
        upstream = start_upstream(self.workdir)
        self.servers.append(upstream)
        self.targets.append(load.Target(report.DIRECT, upstream.port))

        nginx = start_nginx(self.workdir, upstream.port)
        self.servers.append(nginx)
        self.targets.append(load.Target("nginx", nginx.port))

        if not args.no_llmtap:
            self._start_llmtap(upstream.port)
        if args.litellm is not None:
            self._start_litellm(args.litellm, upstream.port)

    def _start_llmtap(self, upstream_port: int) -> None:
        missing = appliance_missing()
        if missing is not None:
            raise SystemExit(f"cannot start llmtap: {missing}; or pass --no-llmtap")
        print("starting llmtap ...", file=sys.stderr, flush=True)
        self.appliance = start_appliance(self.workdir, upstream_port)
        target_url = f"http://127.0.0.1:{upstream_port}"
        self.targets.append(
            load.Target(
                report.PROXY,
                self.appliance.proxy_port,
                (("Helicone-Target-URL", target_url),),
            )
        )
        self.targets.append(load.Target(report.ENTRY, self.appliance.entry_port))

    def _start_litellm(self, venv: Path, upstream_port: int) -> None:
        print("starting LiteLLM ...", file=sys.stderr, flush=True)
        litellm, key = start_litellm(self.workdir, venv, upstream_port)
        self.servers.append(litellm)
        self.targets.append(
            load.Target(
                report.LITELLM,
                litellm.port,
                (("Authorization", f"Bearer {key}"),),
                routes_by_model=True,
            )
        )

    def stop(self) -> None:
        if self.appliance is not None:
            self.appliance.stop()
        for server in reversed(self.servers):
            server.stop()

    def proxy_target(self) -> load.Target | None:
        return next((t for t in self.targets if t.name == report.PROXY), None)


async def warm_up(targets: list[load.Target]) -> None:
    """Open connections and fill caches so the first round is not an outlier."""
    scenarios = load.standard_scenarios()
    for name in ("json", "sse", "ndjson"):
        await load.run_interleaved(targets, scenarios[name], 30)


async def measure(run: Run, plan: rounds.Plan) -> list[rounds.Results]:
    """Run warm-up, the rounds and then the appliance phases."""
    await warm_up(run.targets)
    appliance_results: rounds.Results = {}
    proxy = run.proxy_target()
    if run.appliance is not None and proxy is not None:
        time.sleep(1.0)
        rounds.idle_memory(run.appliance, proxy, appliance_results)

    all_rounds = []
    for index in range(plan.rounds):
        print(f"round {index + 1}/{plan.rounds} ...", file=sys.stderr, flush=True)
        all_rounds.append(await rounds.measure_round(run.targets, plan))

    if run.appliance is not None and proxy is not None:
        if plan.soak_exchanges:
            print("soak ...", file=sys.stderr, flush=True)
            await rounds.soak(
                run.appliance, proxy, plan.soak_exchanges, appliance_results
            )
        if plan.outage_exchanges:
            print("database outage ...", file=sys.stderr, flush=True)
            await rounds.outage(
                run.appliance, proxy, plan.outage_exchanges, appliance_results
            )
    return [*all_rounds, appliance_results]


def quick_failures(results: rounds.Results, targets: list[str]) -> list[str]:
    """Return a sentence for each quick-mode bound that the run is past."""
    if report.PROXY not in targets:
        return ["llmtap was not measured, so its ratios cannot be checked"]
    failures = []

    latency = report.ratio(results, "json c1 p50 ms", report.PROXY, report.DIRECT)
    if not latency <= QUICK_MAX_LATENCY_RATIO:
        failures.append(
            f"p50 latency is {latency:.1f} times direct "
            f"(bound {QUICK_MAX_LATENCY_RATIO:.0f})"
        )
    for metric in ("json c10 per s", "sse c10 per s"):
        value = report.ratio(results, metric, report.PROXY, report.DIRECT)
        if not value >= QUICK_MIN_THROUGHPUT_RATIO:
            failures.append(
                f"{metric} is {value:.4f} of direct "
                f"(bound {QUICK_MIN_THROUGHPUT_RATIO:.4f})"
            )
    for framing in ("sse", "ndjson"):
        metric = f"slow {framing} gap p50 ms"
        value = report.ratio(results, metric, report.PROXY, report.DIRECT)
        low, high = QUICK_GAP_RATIO_RANGE
        if not low <= value <= high:
            failures.append(f"{metric} is {value:.2f} of direct (bound {low}-{high})")

    for metric in results:
        if metric.endswith("failed") and results[metric].get(report.PROXY, 0) > 0:
            failures.append(f"{metric}: {results[metric][report.PROXY]:.0f} exchanges")
    return failures


def code_version() -> str:
    """Return the commit of the checkout, noting uncommitted changes under app/."""

    def git(*arguments: str) -> str:
        completed = subprocess.run(
            ["git", *arguments], cwd=REPO_ROOT, capture_output=True, text=True
        )
        return completed.stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "app")
    return f"{commit} with uncommitted changes in app/" if dirty else commit


def load_average() -> str:
    """Return the 1-minute load average, which shows how busy the machine was."""
    return f"{os.getloadavg()[0]:.1f}"


def machine_line() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}"


def print_report(
    args: argparse.Namespace, plan: rounds.Plan, results: rounds.Results, run: Run
) -> None:
    names = [t.name for t in run.targets]
    command = shlex.join(["python", "-m", "scripts.bench.run", *sys.argv[1:]])
    print(f"## Benchmark {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}\n")
    print(f"- command: `{command}`")
    print(f"- machine: {machine_line()}")
    print(f"- code: {code_version()}")
    print(
        f"- 1-minute load average: {run.load_before} before the run, "
        f"{load_average()} after it"
    )
    print(f"- rounds: {plan.rounds} (each value is the median over the rounds)\n")
    print(report.render(results, names))
    if report.PROXY in names:
        print("### Targets\n")
        print(report.render_goals(results, names))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    plan = choose_plan(args)
    workdir = Path(tempfile.mkdtemp(prefix="llmtap-bench-"))
    run = Run(workdir)
    try:
        run.start(args)
        holder: dict[str, list[rounds.Results]] = {}

        async def go() -> None:
            holder["rounds"] = await measure(run, plan)

        run_fast(go())
    finally:
        run.stop()
        if args.keep:
            print(f"kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)

    results = report.median_results(holder["rounds"])
    if args.json is not None:
        args.json.write_text(json.dumps(holder["rounds"], indent=2, default=str))
    print_report(args, plan, results, run)
    if not args.quick:
        return 0

    failures = quick_failures(results, [t.name for t in run.targets])
    for failure in failures:
        print(f"quick check failed: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
