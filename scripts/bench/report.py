"""Render benchmark results as markdown tables and check them against targets."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from scripts.bench.rounds import Results

DIRECT = "direct"
PROXY = "llmtap-proxy"
ENTRY = "llmtap-entry"
LITELLM = "litellm"

LATENCY_METRICS = [
    "json c1 p50 ms",
    "json c1 p95 ms",
    "json c1 p99 ms",
    "sse ttft p50 ms",
    "sse ttft p99 ms",
    "ndjson ttft p50 ms",
    "ndjson ttft p99 ms",
    "sse stream p50 ms",
    "ndjson stream p50 ms",
    "prompt-16k p50 ms",
    "image-5mb p50 ms",
]
GAP_METRICS = [
    "slow sse gap p50 ms",
    "slow sse gap error p99 ms",
    "slow ndjson gap p50 ms",
    "slow ndjson gap error p99 ms",
]
THROUGHPUT_METRICS = [
    "json c10 per s",
    "sse c10 per s",
    "json c50 per s",
    "sse c50 per s",
    "json c10 wrk per s",
    "json c50 wrk per s",
    "json c10 client cpu us",
    "sse c10 client cpu us",
]
APPLIANCE_METRICS = [
    "proxy rss idle MB",
    "proxy tree rss idle MB",
    "proxy tree pss idle MB",
    "soak exchanges",
    "soak failed",
    "soak sent per s",
    "soak persisted per s",
    "soak persisted peak per s",
    "proxy rss after soak MB",
    "proxy tree rss after soak MB",
    "proxy tree pss after soak MB",
    "outage exchanges",
    "outage failed",
    "proxy rss during outage MB",
    "proxy tree rss during outage MB",
    "outage catch-up s",
    "outage catch-up per s",
    "outage catch-up peak per s",
]


def median_results(rounds: list[Results]) -> Results:
    """Take the median of each metric and target over the rounds that have it."""
    merged: dict[str, dict[str, list[float]]] = {}
    for results in rounds:
        for metric, values in results.items():
            for target, value in values.items():
                merged.setdefault(metric, {}).setdefault(target, []).append(value)
    return {
        metric: {target: statistics.median(v) for target, v in values.items()}
        for metric, values in merged.items()
    }


def added(results: Results, metric: str, target: str) -> float:
    """Return `target`'s value of `metric` minus the direct one, in the same run."""
    values = results.get(metric, {})
    if target not in values or DIRECT not in values:
        return math.nan
    return values[target] - values[DIRECT]


def ratio(results: Results, metric: str, top: str, bottom: str) -> float:
    values = results.get(metric, {})
    if top not in values or not values.get(bottom):
        return math.nan
    return values[top] / values[bottom]


def _number(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "n/a"
    magnitude = abs(value)
    digits = 3
    if magnitude >= 100:
        digits = 0
    elif magnitude >= 1:
        digits = 2
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [_row(header), _row(["---"] * len(header))]
    return lines + [_row(row) for row in rows]


def render(results: Results, targets: list[str]) -> str:
    """Render the latency, stream, throughput and appliance tables."""
    others = [t for t in targets if t != DIRECT]
    lines = ["### Latency at concurrency 1 (ms; proxies: added over direct)", ""]
    rows = []
    for metric in LATENCY_METRICS:
        if metric not in results:
            continue
        direct_value = results[metric].get(DIRECT, math.nan)
        cells = [_number(added(results, metric, t), signed=True) for t in others]
        rows.append([metric, _number(direct_value), *cells])
    lines += _table(["metric", DIRECT, *others], rows)

    lines += ["", "### Paced streams (10 ms between events; ms)", ""]
    rows = []
    for metric in GAP_METRICS:
        if metric in results:
            values = results[metric]
            rows.append([metric, *(_number(values.get(t, math.nan)) for t in targets)])
    lines += _table(["metric", *targets], rows)

    lines += ["", "### Throughput (exchanges per second; client CPU per exchange)", ""]
    lines += _throughput_table(results, targets)

    appliance_rows = [
        [metric, _number(results[metric].get(PROXY, math.nan))]
        for metric in APPLIANCE_METRICS
        if metric in results
    ]
    if appliance_rows:
        lines += ["", "### Appliance (proxy port)", ""]
        lines += _table(["metric", "value"], appliance_rows)
    return "\n".join(lines) + "\n"


def _throughput_table(results: Results, targets: list[str]) -> list[str]:
    ratios = [(PROXY, LITELLM), (ENTRY, LITELLM), (PROXY, DIRECT)]
    ratios = [(top, bottom) for top, bottom in ratios if {top, bottom} <= set(targets)]
    header = ["metric", *targets, *(f"{top} ÷ {bottom}" for top, bottom in ratios)]
    rows = []
    for metric in THROUGHPUT_METRICS:
        if metric not in results:
            continue
        cells = [_number(results[metric].get(t, math.nan)) for t in targets]
        if "per s" in metric:
            cells += [_number(ratio(results, metric, *pair)) for pair in ratios]
        else:
            cells += [""] * len(ratios)
        rows.append([metric, *cells])
    return _table(header, rows)


@dataclass(frozen=True)
class Goal:
    """A target of the suite: a description, how to measure it, and its bound."""

    name: str
    measure: Callable[[Results, str], float]
    bound: float
    at_most: bool

    def met(self, value: float) -> bool | None:
        if math.isnan(value):
            return None
        return value <= self.bound if self.at_most else value >= self.bound


def _added(metric: str) -> Callable[[Results, str], float]:
    return lambda results, target: added(results, metric, target)


def _over_litellm(metric: str) -> Callable[[Results, str], float]:
    return lambda results, target: ratio(results, metric, target, LITELLM)


def _value(metric: str) -> Callable[[Results, str], float]:
    return lambda results, target: results.get(metric, {}).get(target, math.nan)


GOALS = [
    Goal("added latency p50 (ms)", _added("json c1 p50 ms"), 1.0, True),
    Goal("added latency p99 (ms)", _added("json c1 p99 ms"), 3.0, True),
    Goal("added SSE TTFT p50 (ms)", _added("sse ttft p50 ms"), 1.0, True),
    Goal("added NDJSON TTFT p50 (ms)", _added("ndjson ttft p50 ms"), 1.0, True),
    Goal(
        "added SSE gap error p99 (ms)", _added("slow sse gap error p99 ms"), 1.0, True
    ),
    Goal(
        "added NDJSON gap error p99 (ms)",
        _added("slow ndjson gap error p99 ms"),
        1.0,
        True,
    ),
    Goal("JSON c10 ÷ LiteLLM", _over_litellm("json c10 per s"), 10.0, False),
    Goal("SSE c10 ÷ LiteLLM", _over_litellm("sse c10 per s"), 10.0, False),
    Goal("persisted per s (soak)", _value("soak persisted per s"), 1000.0, False),
    Goal(
        "persisted per s (catch-up after outage)",
        _value("outage catch-up per s"),
        1000.0,
        False,
    ),
    Goal("proxy RSS idle (MB)", _value("proxy rss idle MB"), 100.0, True),
    Goal("proxy RSS after soak (MB)", _value("proxy rss after soak MB"), 150.0, True),
    Goal(
        "proxy RSS during outage (MB)",
        _value("proxy rss during outage MB"),
        150.0,
        True,
    ),
    # The same bounds for the proxy with its child processes (the recorder).
    Goal("proxy tree RSS idle (MB)", _value("proxy tree rss idle MB"), 100.0, True),
    Goal(
        "proxy tree RSS after soak (MB)",
        _value("proxy tree rss after soak MB"),
        150.0,
        True,
    ),
    Goal(
        "proxy tree RSS during outage (MB)",
        _value("proxy tree rss during outage MB"),
        150.0,
        True,
    ),
]


def render_goals(results: Results, targets: list[str]) -> str:
    """Render each goal with the proxy port's value and the entry port's.

    A goal is met when every port measured for it meets the bound.
    """
    shown = [t for t in (PROXY, ENTRY) if t in targets]
    rows = []
    for goal in GOALS:
        values = [goal.measure(results, target) for target in shown]
        verdicts = [goal.met(value) for value in values]
        missed = [t for t, met in zip(shown, verdicts, strict=True) if met is False]
        if missed:
            status = f"NOT MET ({', '.join(missed)})"
        elif any(verdicts):
            status = "met"
        else:
            status = "not measured"
        bound = f"{'≤' if goal.at_most else '≥'} {_number(goal.bound)}"
        rows.append([goal.name, bound, *(_number(v) for v in values), status])
    return "\n".join(_table(["goal", "bound", *shown, "status"], rows)) + "\n"
