"""Print the CPU time each process spends per exchange during a soak.

Usage (as root, from the repository root):

    .venv/bin/python -m scripts.bench.cpu_split --exchanges 5000

It boots the appliance in front of the benchmark upstream and sends the
soak's mix (half JSON, half SSE, 10 in flight) to the proxy port. The user
and system CPU time of every process, read from /proc before and after,
is grouped by role and divided by the exchanges stored. The client is this
process. On a machine with two cores the rows show which process to make
cheaper for more exchanges per second.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from scripts.bench import load
from scripts.bench.appliance import Appliance, start_appliance, wait_for_rows
from scripts.bench.servers import start_upstream
from scripts.bench.upstream import run_fast

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
# A process's role, from the first of these texts its command line contains.
ROLES = (
    ("app.proxy.recorder", "recorder"),
    ("app.proxy", "proxy"),
    ("postgres", "postgres"),
    ("scripts.bench.upstream", "upstream"),
    ("nginx", "nginx"),
    ("app.web", "web"),
    ("postgrest", "postgrest"),
    ("supervisord", "supervisord"),
)
WARM_UP_EXCHANGES = 500
PERSIST_TIMEOUT_S = 120.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench.cpu_split", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--exchanges", type=int, default=5000, help="Exchanges in the soak."
    )
    return parser.parse_args(argv)


def cpu_seconds_by_role() -> dict[str, float]:
    """Return the CPU seconds used so far by each role's processes."""
    found: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        role = "client" if int(entry.name) == os.getpid() else role_of(command)
        if role is None:
            continue
        # Fields after the command name; utime and stime are the 14th and 15th.
        fields = stat[stat.rindex(")") + 2 :].split()
        seconds = (int(fields[11]) + int(fields[12])) / TICKS_PER_S
        found[role] = found.get(role, 0.0) + seconds
    return found


def role_of(command: str) -> str | None:
    return next((role for text, role in ROLES if text in command), None)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        upstream = start_upstream(workdir)
        appliance = start_appliance(workdir, upstream.port)
        try:
            target = load.Target(
                "llmtap-proxy",
                appliance.proxy_port,
                (("Helicone-Target-URL", f"http://127.0.0.1:{upstream.port}"),),
            )
            used, elapsed = measure(appliance, target, args.exchanges)
            report(used, elapsed, args.exchanges)
        finally:
            appliance.stop()
            upstream.stop()


def measure(
    appliance: Appliance, target: load.Target, exchanges: int
) -> tuple[dict[str, float], float]:
    """Return the CPU seconds of each role during the soak, and its wall time."""
    scenarios = load.standard_scenarios()
    mix = [scenarios["json"], scenarios["sse"]]
    run_fast(load.run_count(target, mix, 10, WARM_UP_EXCHANGES))
    time.sleep(2.0)

    rows_before = appliance.count_exchanges()
    before = cpu_seconds_by_role()
    started = time.perf_counter()
    run_fast(load.run_count(target, mix, 10, exchanges))
    wait_for_rows(appliance, rows_before + exchanges, PERSIST_TIMEOUT_S)
    elapsed = time.perf_counter() - started
    after = cpu_seconds_by_role()

    used = {role: after[role] - before.get(role, 0.0) for role in after}
    return used, elapsed


def report(used: dict[str, float], elapsed: float, exchanges: int) -> None:
    print(f"{exchanges} exchanges sent and stored in {elapsed:.1f} s\n")
    print("| process | CPU s | µs per exchange | share of one core |")
    print("| --- | --- | --- | --- |")
    for role, seconds in sorted(used.items(), key=lambda item: -item[1]):
        per_exchange = seconds / exchanges * 1e6
        share = seconds / elapsed * 100
        print(f"| {role} | {seconds:.2f} | {per_exchange:.0f} | {share:.0f} % |")


if __name__ == "__main__":
    main()
