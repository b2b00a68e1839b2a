"""Profile the llmtap proxy under load with py-spy and summarise where time goes.

Usage (as root, from the repository root, with py-spy on PATH or given):

    python -m scripts.bench.profile --scenario json --seconds 15 --out /tmp/prof

It boots the appliance in front of the benchmark upstream, keeps
`--concurrency` exchanges in flight against the proxy port, samples the proxy
process with `py-spy record` and writes `profile.svg` (a flame graph) and
`profile.txt` (collapsed stacks) into `--out`. It then prints the share of
samples in each function, inclusive and self, from the collapsed stacks.
"""

from __future__ import annotations

import argparse
import collections
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from scripts.bench import load
from scripts.bench.appliance import (
    PROXY_PROGRAM,
    appliance_missing,
    children_of,
    start_appliance,
)
from scripts.bench.servers import start_upstream
from scripts.bench.upstream import run_fast

# py-spy starts sampling a moment after it attaches; the load runs longer than
# the recording on both ends, so every sample falls under steady load.
LOAD_MARGIN_S = 3.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m scripts.bench.profile", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--scenario",
        default="json",
        choices=sorted(load.standard_scenarios()),
        help="Kind of request to send.",
    )
    parser.add_argument("--concurrency", type=int, default=10, help="In flight.")
    parser.add_argument(
        "--seconds", type=int, default=15, help="Length of the recording."
    )
    parser.add_argument(
        "--rate", type=int, default=250, help="py-spy samples per second."
    )
    parser.add_argument(
        "--out", type=Path, required=True, help="Directory for the profile files."
    )
    parser.add_argument(
        "--py-spy", default=shutil.which("py-spy"), help="Path of the py-spy binary."
    )
    parser.add_argument("--top", type=int, default=40, help="Functions to list.")
    parser.add_argument(
        "--child",
        metavar="TEXT",
        help="Profile the proxy's child process whose command line contains TEXT "
        "(for example 'recorder') instead of the proxy itself.",
    )
    return parser.parse_args(argv)


def record(py_spy: str, pid: int, args: argparse.Namespace, form: str) -> Path:
    suffix = "svg" if form == "flamegraph" else "txt"
    output = args.out / f"profile.{suffix}"
    command = [
        py_spy, "record", "--pid", str(pid), "--duration", str(args.seconds),
        "--rate", str(args.rate), "--format", form, "--output", str(output),
        "--nonblocking",
    ]  # fmt: skip
    return_code = subprocess.run(command, capture_output=True).returncode
    if return_code != 0:
        raise RuntimeError(f"py-spy exited with {return_code}: {shlex.join(command)}")
    return output


def summarise(collapsed: Path, top: int) -> str:
    """List the functions with the largest share of samples, inclusive and self."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = [_short(frame) for frame in stack.split(";")]
        total += count
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count

    lines = [
        f"{total} samples",
        "",
        "| function | inclusive % | self % |",
        "|---|---|---|",
    ]
    for frame, count in inclusive.most_common(top):
        share = 100 * count / total
        self_share = 100 * own[frame] / total
        lines.append(f"| `{frame}` | {share:.1f} | {self_share:.1f} |")
    return "\n".join(lines)


def _short(frame: str) -> str:
    """Turn `func (path/to/module.py:12)` into `func (module.py)`."""
    name, _, where = frame.partition(" (")
    module = where.rsplit(":", 1)[0].rstrip(")")
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in module:
            module = module.split(marker, 1)[1]
    return f"{name} ({module})" if module else name


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    missing = appliance_missing()
    if missing is not None or not args.py_spy:
        print(f"cannot profile: {missing or 'py-spy is not on PATH'}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    workdir = Path(tempfile.mkdtemp(prefix="llmtap-profile-"))
    upstream = start_upstream(workdir)
    appliance = None
    try:
        appliance = start_appliance(workdir, upstream.port)
        target = load.Target(
            "llmtap-proxy",
            appliance.proxy_port,
            (("Helicone-Target-URL", f"http://127.0.0.1:{upstream.port}"),),
        )
        pid = appliance.program_pid(PROXY_PROGRAM)
        if args.child:
            pid = find_child(pid, args.child)
        scenario = load.standard_scenarios()[args.scenario]
        for form in ("raw", "flamegraph"):
            measurement = profile_once(args, target, scenario, pid, form)
        print(f"{measurement.per_second:.0f} exchanges/s during the recording")
        print(summarise(args.out / "profile.txt", args.top))
    finally:
        if appliance is not None:
            appliance.stop()
        upstream.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


def find_child(parent: int, text: str) -> int:
    """Return the pid of a descendant of `parent` whose command line has `text`."""
    pending = list(children_of(parent))
    while pending:
        pid = pending.pop()
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        if text.encode() in command:
            return pid
        pending += children_of(pid)
    raise RuntimeError(f"no child process of {parent} has {text!r} in its command")


def profile_once(
    args: argparse.Namespace,
    target: load.Target,
    scenario: load.Scenario,
    pid: int,
    form: str,
) -> load.Measurement:
    """Record one profile of `pid` in `form` while the load runs in a thread."""
    holder: dict[str, load.Measurement] = {}

    async def go() -> None:
        seconds = args.seconds + 2 * LOAD_MARGIN_S
        holder["load"] = await load.run_throughput(
            target, scenario, args.concurrency, seconds
        )

    thread = threading.Thread(target=run_fast, args=(go(),))
    thread.start()
    time.sleep(LOAD_MARGIN_S)
    record(args.py_spy, pid, args, form)
    thread.join()
    return holder["load"]


if __name__ == "__main__":
    sys.exit(main())
