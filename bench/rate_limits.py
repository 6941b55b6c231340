"""How close Joule, the predecessor's thread pools and plain calls get to a rate limit.

python -m bench.rate_limits [--large] [--calls N] [--rate 10] [--fail 0.05]
    [--latency 0.3-0.8] [--seed S]
"""

from __future__ import annotations

import argparse
import csv
import logging
import math
import os
import re
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import openai

from joule.plan import ObjectiveSpec, Plan, TaskSpec, load_plan
from joule.sim import RequestRecord, SimConfig, Simulator, latency_range

COMPLETIONS = "/v1/chat/completions"
MODEL = "gpt-4o-mini"
SIM_KEY = "sim"
# The predecessor's pools (chapters x tasks), as in its implementation summary.
PREDECESSOR_CHAPTERS = 5
PREDECESSOR_TASKS = 3
# The run the targets are set for; other settings still print them, flagged.
REFERENCE = {"calls": 150, "rate": 10.0, "fail": 0.05, "latency": (0.3, 0.8)}
TARGET_RATIO = 1.15
TARGET_429_SHARE = 0.02
TARGET_OVERHEAD_GROWTH = 1.5

ReportFlow = Callable[..., dict]


@dataclass(frozen=True)
class Workload:
    """The benchmark's prompt sheet and the simulated provider it runs against."""

    calls: int
    rate: float
    fail: float
    latency: tuple[float, float]
    seed: int
    chapters: int = 10
    steps: int = 3

    @property
    def tasks(self) -> int:
        return max(1, math.ceil(self.calls / self.steps))

    @property
    def total_calls(self) -> int:
        """Calls actually in the sheet: whole tasks of `steps` steps each."""
        return self.tasks * self.steps

    @property
    def requests_per_minute(self) -> int:
        return max(1, round(self.rate * 60))

    @property
    def burst_requests(self) -> float:
        """What the simulator lets through at once: one second's worth."""
        return max(1.0, self.requests_per_minute / 60)

    @property
    def max_in_flight(self) -> int:
        # Twice what the rate keeps busy at the slowest latency: enough that
        # calls in flight never cap the rate, few enough to stay polite.
        return max(4, math.ceil(self.rate * self.latency[1] * 2))

    def sim_config(self) -> SimConfig:
        return SimConfig(
            models=(MODEL,),
            latency_min_s=self.latency[0],
            latency_max_s=self.latency[1],
            seed=self.seed,
            requests_per_minute=self.requests_per_minute,
            burst=1 / 60,
            fail_500=self.fail,
        )

    def resized(self, calls: int) -> Workload:
        return Workload(
            calls,
            self.rate,
            self.fail,
            self.latency,
            self.seed,
            self.chapters,
            self.steps,
        )


# ---------------------------------------------------------------------------
# The generated project

STEP_PROMPTS = (
    "Section {{ task }}: summarise the outlook for {{ objective }} in two "
    "sentences, quoting the figures.",
    "Section {{ task }}: tighten this draft into one paragraph: {{ previous[-1] }}",
    "Section {{ task }}: give one recommendation that follows from: {{ previous[-1] }}",
)


def write_project(folder: Path, workload: Workload) -> Path:
    """A project folder with report.toml, a CSV prompt sheet and one data table."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    per_chapter = math.ceil(workload.tasks / workload.chapters)
    chapters = math.ceil(workload.tasks / per_chapter)

    with open(folder / "data" / "figures.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["chapter", "indicator", "value", "unit"])
        for chapter in range(1, chapters + 1):
            writer.writerow([chapter, "demand", f"{38 + 1.7 * chapter:.1f}", "TWh"])
            writer.writerow([chapter, "solar", f"{2.1 + 0.4 * chapter:.1f}", "GW"])
            writer.writerow([chapter, "grid load", f"{61 + 2 * chapter}", "%"])

    with open(folder / "prompts.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["objective_id", "objective", "task_id", "task", "step", "prompt", "data"]
        )
        for index in range(workload.tasks):
            chapter = index // per_chapter + 1
            task_id = f"{chapter}.{index % per_chapter + 1}"
            for step in range(1, workload.steps + 1):
                prompt = STEP_PROMPTS[min(step, len(STEP_PROMPTS)) - 1]
                data = f"figures[chapter == {chapter}]" if step == 1 else ""
                writer.writerow(
                    [
                        chapter,
                        f"Region {chapter}",
                        task_id,
                        f"Topic {task_id}",
                        step,
                        prompt,
                        data,
                    ]
                )

    (folder / "report.toml").write_text(
        f"""title = "Rate-limit benchmark"
prompt_sheet = "prompts.csv"

[data.figures]
path = "data/figures.csv"

[llm]
model = "{MODEL}"
max_tokens = 120

[limits]
requests_per_minute = {workload.requests_per_minute}
tokens_per_minute = 100000000
max_in_flight = {workload.max_in_flight}

[output]
formats = ["md", "csv"]
""",
        encoding="utf-8",
    )
    return folder


# ---------------------------------------------------------------------------
# The three approaches


@dataclass
class Run:
    """What one approach did: its wall time, its steps and the simulator's log."""

    approach: str
    steps: int
    attempted: int
    failed: int
    started_at: float
    ended_at: float
    records: list[RequestRecord]
    errors: list[str] = field(default_factory=list)
    crashed: str | None = None
    prefect_retries: int = 0
    prefect_backoff_s: float = 0.0

    @property
    def wall_s(self) -> float:
        return self.ended_at - self.started_at


@contextmanager
def prefect_server() -> Iterator[tuple[ReportFlow, float]]:
    """Import Prefect and start a temporary server; yields the flow and the time."""
    started = time.monotonic()
    from prefect.testing.utilities import prefect_test_harness

    from flows.report import report_flow

    with prefect_test_harness(server_startup_timeout=120):
        yield report_flow, time.monotonic() - started


class _PrefectRetries(logging.Handler):
    """Counts the Prefect client's retries of busy-server answers, and their waits."""

    # Prefect logs each retry at DEBUG: "... retryable status code 503. Another
    # attempt will be made in 2.1s ..."; other wording only makes the count 0.
    _WAIT = re.compile(r"made in ([0-9.]+) ?s")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self.waited_s = 0.0

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "retryable" not in message:
            return
        self.count += 1
        wait = self._WAIT.search(message)
        self.waited_s += float(wait.group(1)) if wait else 0.0


@contextmanager
def counting_prefect_retries() -> Iterator[_PrefectRetries]:
    """Count, while in the block, how often the Prefect client retried its server."""
    logger = logging.getLogger("prefect.client")
    counter = _PrefectRetries()
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(counter)
    try:
        yield counter
    finally:
        logger.removeHandler(counter)
        logger.setLevel(level)


def run_joule(report_flow: ReportFlow, project: Path, workload: Workload) -> Run:
    """The real report flow, Prefect and all, against a fresh simulator."""
    steps = workload.total_calls
    summary: dict = {"steps": steps, "skipped": 0, "failed": steps, "failures": []}
    crashed = None
    with Simulator(workload.sim_config()) as sim, counting_prefect_retries() as busy:
        started = time.monotonic()
        try:
            summary = report_flow(
                project_dir=str(project),
                out_dir=str(project / "output"),
                base_url=sim.base_url,
            )
        except Exception as exc:  # the figures of a crashed run are still worth having
            crashed = " ".join(f"{type(exc).__name__}: {exc}".split())[:200]
        ended = time.monotonic()
        records = sim.requests
    return Run(
        approach="Joule (report_flow)",
        steps=summary["steps"],
        attempted=summary["steps"] - summary["skipped"],
        failed=summary["failed"] + summary["skipped"],
        started_at=started,
        ended_at=ended,
        records=records,
        errors=summary["failures"],
        crashed=crashed,
        prefect_retries=busy.count,
        prefect_backoff_s=busy.waited_s,
    )


class _Tally:
    """Answers and errors gathered by the baseline approaches' threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.attempted = 0
        self.answered = 0
        self.errors: list[str] = []

    def attempt(self) -> None:
        with self.lock:
            self.attempted += 1

    def answer(self) -> None:
        with self.lock:
            self.answered += 1

    def error(self, exc: BaseException) -> None:
        with self.lock:
            self.errors.append(f"{type(exc).__name__}: {exc}")


def _run_task(client: openai.OpenAI, plan: Plan, task: TaskSpec, tally: _Tally) -> None:
    """The steps of one task, one after another; an error ends the task."""
    previous: list[str] = []
    for step in task.steps:
        request = plan.render(step, previous, {})
        tally.attempt()
        response = client.chat.completions.create(
            model=request.model,
            messages=request.message_dicts(),
            temperature=request.temperature,
            max_tokens=request.max_tokens,
        )
        previous.append(response.choices[0].message.content or "")
        tally.answer()


def _baseline_client(base_url: str) -> openai.OpenAI:
    # The SDK's defaults, spelt out: two retries with its own backoff.
    return openai.OpenAI(base_url=base_url, api_key=SIM_KEY, max_retries=2)


def run_predecessor(plan: Plan, workload: Workload) -> Run:
    """Chapters x tasks in two fixed nested thread pools, no limiter, errors printed."""
    tally = _Tally()
    with Simulator(workload.sim_config()) as sim:
        client = _baseline_client(sim.base_url)

        def chapter(objective: ObjectiveSpec) -> None:
            with ThreadPoolExecutor(PREDECESSOR_TASKS) as pool:
                futures = [
                    pool.submit(_run_task, client, plan, task, tally)
                    for task in objective.tasks
                ]
                for future in futures:
                    try:
                        future.result()
                    except Exception as exc:  # the predecessor printed and went on
                        tally.error(exc)

        started = time.monotonic()
        with ThreadPoolExecutor(PREDECESSOR_CHAPTERS) as pool:
            list(pool.map(chapter, plan.objectives))
        ended = time.monotonic()
        records = sim.requests
    steps = len(plan.steps())
    return Run(
        approach=f"threads {PREDECESSOR_CHAPTERS}x{PREDECESSOR_TASKS}",
        steps=steps,
        attempted=tally.attempted,
        failed=steps - tally.answered,
        started_at=started,
        ended_at=ended,
        records=records,
        errors=tally.errors,
    )


def run_sequential(plan: Plan, workload: Workload, calls: int) -> Run:
    """The first `calls` calls (whole tasks) one after another."""
    tasks = [task for objective in plan.objectives for task in objective.tasks]
    tasks = tasks[: max(1, calls // workload.steps)]
    tally = _Tally()
    with Simulator(workload.sim_config()) as sim:
        client = _baseline_client(sim.base_url)
        started = time.monotonic()
        for task in tasks:
            try:
                _run_task(client, plan, task, tally)
            except Exception as exc:
                tally.error(exc)
        ended = time.monotonic()
        records = sim.requests
    steps = sum(len(task.steps) for task in tasks)
    return Run(
        approach="sequential",
        steps=steps,
        attempted=tally.attempted,
        failed=steps - tally.answered,
        started_at=started,
        ended_at=ended,
        records=records,
        errors=tally.errors,
    )


# ---------------------------------------------------------------------------
# Measuring from the simulator's log


@dataclass(frozen=True)
class Measurement:
    """One row of the table, every figure read from the simulator's own log."""

    approach: str
    calls: int
    wall_s: float
    span_s: float
    bound_s: float
    fastest_s: float
    requests: int
    admitted: int
    rate_limited: int
    retries: int
    failed: int
    lead_in_s: float
    tail_s: float

    @property
    def ratio(self) -> float:
        return self.span_s / self.bound_s if self.bound_s > 0 else math.inf

    @property
    def share_429(self) -> float:
        return self.rate_limited / self.requests if self.requests else 0.0

    @property
    def overhead_per_call_s(self) -> float:
        return (self.wall_s - self.span_s) / self.calls if self.calls else 0.0


def lower_bound(admitted: int, fastest_s: float, workload: Workload) -> float:
    """W*: no run of these admitted requests can end sooner under the limit."""
    chain = workload.steps * fastest_s
    paced = max(0.0, admitted - workload.burst_requests) / workload.rate + fastest_s
    return max(chain, paced)


def measure(run: Run, workload: Workload) -> Measurement:
    """Span, W*, 429s and retries of one run, from the simulator's request log."""
    completions = [r for r in run.records if r.path == COMPLETIONS]
    admitted = [r for r in completions if r.status != 429]
    finished = [r.finished_at for r in completions if r.finished_at is not None]
    first = min((r.arrived_at for r in completions), default=run.started_at)
    last = max(finished, default=first)
    latencies = [
        r.finished_at - r.arrived_at for r in admitted if r.finished_at is not None
    ]
    fastest = min(latencies, default=workload.latency[0])
    return Measurement(
        approach=run.approach,
        calls=run.steps,
        wall_s=run.wall_s,
        span_s=last - first,
        bound_s=lower_bound(len(admitted), fastest, workload),
        fastest_s=fastest,
        requests=len(completions),
        admitted=len(admitted),
        rate_limited=len(completions) - len(admitted),
        retries=len(completions) - run.attempted,
        failed=run.failed,
        lead_in_s=first - run.started_at,
        tail_s=run.ended_at - last,
    )


# ---------------------------------------------------------------------------
# Reporting

COLUMNS = (
    ("approach", 26, "{}"),
    ("calls", 6, "{:d}"),
    ("wall s", 7, "{:.1f}"),
    ("span s", 7, "{:.1f}"),
    ("W* s", 7, "{:.1f}"),
    ("span/W*", 8, "{:.2f}x"),
    ("admitted", 9, "{:d}"),
    ("429s", 6, "{:d}"),
    ("429 %", 6, "{:.1%}"),
    ("retries", 8, "{:d}"),
    ("failed", 7, "{:d}"),
    ("ovh ms/call", 12, "{:.1f}"),
)


def format_table(rows: Sequence[Measurement]) -> str:
    """The measurements as a fixed-width table."""
    header = "".join(
        name.ljust(width) if i == 0 else name.rjust(width)
        for i, (name, width, _) in enumerate(COLUMNS)
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        values = (
            row.approach,
            row.calls,
            row.wall_s,
            row.span_s,
            row.bound_s,
            row.ratio,
            row.admitted,
            row.rate_limited,
            row.share_429,
            row.retries,
            row.failed,
            row.overhead_per_call_s * 1000,
        )
        cells = [
            spec.format(value).ljust(width)
            if i == 0
            else spec.format(value).rjust(width)
            for i, ((_, width, spec), value) in enumerate(
                zip(COLUMNS, values, strict=True)
            )
        ]
        lines.append("".join(cells))
    return "\n".join(lines)


def format_targets(row: Measurement, workload: Workload) -> str:
    """Joule's figures against the targets, each marked met or MISSED."""
    checks = (
        (
            f"span within {TARGET_RATIO:.2f}x W*",
            f"{row.ratio:.2f}x",
            row.ratio <= TARGET_RATIO,
        ),
        ("every step succeeds", f"{row.failed} failed", row.failed == 0),
        (
            f"429s at most {TARGET_429_SHARE:.0%} of requests",
            f"{row.share_429:.1%} ({row.rate_limited} of {row.requests})",
            row.share_429 <= TARGET_429_SHARE,
        ),
    )
    lines = [f"Targets for Joule ({row.calls} calls):"]
    for name, value, met in checks:
        lines.append(f"  {name:<32} {value:<22} {'met' if met else 'MISSED'}")
    current = {
        "calls": workload.total_calls,
        "rate": workload.rate,
        "fail": workload.fail,
        "latency": workload.latency,
    }
    if current != REFERENCE:
        lines.append(
            "  (the targets are set for 150 calls, 10 req/s, 0.3-0.8 s, 5% 5xx; "
            "this run differs)"
        )
    return "\n".join(lines)


def format_settings(workload: Workload) -> str:
    """The provider's and the sheet's settings, printed above the table."""
    return (
        f"Simulated provider: {workload.rate:g} req/s ({workload.requests_per_minute} "
        f"rpm), burst {workload.burst_requests:g} requests, latency "
        f"{workload.latency[0]:g}-{workload.latency[1]:g} s, {workload.fail:.0%} "
        f"answered 500, seed {workload.seed}.\n"
        f"Sheet: {workload.total_calls} calls = {workload.tasks} tasks x "
        f"{workload.steps} chained steps over {workload.chapters} chapters; "
        f"Joule's [limits]: {workload.requests_per_minute} rpm, max_in_flight "
        f"{workload.max_in_flight}. Machine: {os.cpu_count()} cores."
    )


def first_error(run: Run) -> str:
    """The first error a baseline printed, on one short line."""
    if not run.errors:
        return ""
    text = " ".join(run.errors[0].split())
    return text if len(text) <= 110 else text[:107] + "..."


def seconds_since_process_start() -> float | None:
    """Wall time since this interpreter started, read from /proc (Linux only)."""
    try:
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - int(stat[19]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


# ---------------------------------------------------------------------------
# Command line


def build_parser() -> argparse.ArgumentParser:
    """The command line of python -m bench.rate_limits."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.rate_limits",
        description="Run the same prompt sheet through Joule, the predecessor's "
        "nested thread pools and sequential calls against one simulated, "
        "rate-limited provider, and compare each with the rate limit's lower bound.",
        epilog="example: python -m bench.rate_limits --calls 150 --rate 10",
    )
    add = parser.add_argument
    add("--calls", type=int, help="model calls (default 150; 1000 with --large)")
    add("--rate", type=float, default=10.0, help="requests per second (default 10)")
    add("--fail", type=float, default=0.05, help="share answered 500 (default 0.05)")
    add(
        "--latency",
        type=latency_range,
        default=(0.3, 0.8),
        metavar="MIN-MAX",
        help="seconds per answer (default 0.3-0.8)",
    )
    add("--seed", type=int, default=0, help="seed for latencies and faults")
    add(
        "--sequential-calls",
        type=int,
        default=24,
        metavar="N",
        help="run the sequential baseline on the first N calls and extrapolate "
        "(default 24)",
    )
    add(
        "--large",
        action="store_true",
        help="Joule only, at 150 calls and at --calls (default 1000), comparing "
        "the orchestration overhead per call",
    )
    add(
        "--baselines",
        action="store_true",
        help="with --large, run the predecessor and sequential baselines too",
    )
    return parser


def format_notes(
    runs: Sequence[tuple[Run, Workload]],
    rows: Sequence[Measurement],
    workload: Workload,
    prefect_s: float,
) -> str:
    """What the table's figures leave out: start-up, extrapolation, errors."""
    lines = [
        f"Prefect start-up (import + temporary server), not in Joule's wall time: "
        f"{prefect_s:.1f} s.",
    ]
    for (run, _), row in zip(runs, rows, strict=True):
        if run.approach.startswith("Joule"):
            lines.append(
                f"{run.approach}, {row.calls} calls: wall incl. Prefect start-up "
                f"{row.wall_s + prefect_s:.1f} s; overhead = (wall - span) / calls = "
                f"{row.lead_in_s:.1f} s before the first request + "
                f"{row.tail_s:.1f} s after the last answer."
            )
            if run.prefect_retries:
                lines.append(
                    f"  Prefect's server answered busy (503) {run.prefect_retries} "
                    f"times; its client backed off {run.prefect_backoff_s:.0f} s in "
                    "all (summed over threads)."
                )
            if run.crashed:
                lines.append(f"  The flow CRASHED: {run.crashed}")
        if run.approach == "sequential" and row.calls < workload.total_calls:
            scale = workload.total_calls / row.calls
            lines.append(
                f"sequential ran {row.calls} of {workload.total_calls} calls; "
                f"extrapolated to all: span ~{row.span_s * scale:.0f} s "
                f"(measured span x {scale:.1f}), {row.failed * scale:.0f} failed."
            )
        if run.errors and not run.approach.startswith("Joule"):
            lines.append(
                f"{run.approach}: {len(run.errors)} errors printed, "
                f"e.g. {first_error(run)}"
            )
    return "\n".join(lines)


def format_overhead_growth(small: Measurement, large: Measurement) -> str:
    """Joule's overhead per call at two sizes and how much it grew."""
    growth = (
        large.overhead_per_call_s / small.overhead_per_call_s
        if small.overhead_per_call_s > 0
        else math.inf
    )
    verdict = "met" if growth <= TARGET_OVERHEAD_GROWTH else "MISSED"
    return (
        f"Overhead per call: {small.overhead_per_call_s * 1000:.1f} ms at "
        f"{small.calls} calls, {large.overhead_per_call_s * 1000:.1f} ms at "
        f"{large.calls} calls: {growth:.2f}x (target at most "
        f"{TARGET_OVERHEAD_GROWTH:.1f}x) {verdict}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print its table; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    calls = args.calls or (1000 if args.large else REFERENCE["calls"])
    if calls < 1 or args.rate <= 0 or not 0 <= args.fail <= 1:
        parser.error("--calls and --rate must be positive, --fail between 0 and 1")
    workload = Workload(calls, args.rate, args.fail, args.latency, args.seed)
    # Prefect's console stays quiet; its API logging (part of the cost) stays on.
    os.environ.setdefault("PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL", "WARNING")
    # The temporary server logs the event flushes its shutdown cancels as errors.
    os.environ.setdefault("PREFECT_SERVER_LOGGING_LEVEL", "CRITICAL")

    print(format_settings(workload), flush=True)
    with tempfile.TemporaryDirectory(prefix="joule-bench-") as tmp:
        sizes = [workload]
        if args.large and workload.total_calls != REFERENCE["calls"]:
            sizes.insert(0, workload.resized(REFERENCE["calls"]))
        projects = [write_project(Path(tmp) / f"p{w.total_calls}", w) for w in sizes]

        print("Starting Prefect (import and temporary server) ...", flush=True)
        runs: list[tuple[Run, Workload]] = []
        with prefect_server() as (report_flow, prefect_s):
            for size, project in zip(sizes, projects, strict=True):
                print(f"Joule: {size.total_calls} calls ...", flush=True)
                runs.append((run_joule(report_flow, project, size), size))

        plan = load_plan(projects[-1])
        sequential_calls = min(args.sequential_calls, workload.total_calls)
        if not args.large or args.baselines:
            print("Predecessor's nested thread pools ...", flush=True)
            runs.append((run_predecessor(plan, workload), workload))
            print(f"Sequential: first {sequential_calls} calls ...", flush=True)
            runs.append((run_sequential(plan, workload, sequential_calls), workload))

    rows = [measure(run, size) for run, size in runs]
    print()
    print(format_table(rows))
    print()
    print(format_notes(runs, rows, workload, prefect_s))
    print()
    joule_rows = [row for row in rows if row.approach.startswith("Joule")]
    reference = next(
        (row for row in joule_rows if row.calls == REFERENCE["calls"]), joule_rows[-1]
    )
    print(format_targets(reference, sizes[0]))
    if args.large and len(joule_rows) == 2:
        print(format_overhead_growth(joule_rows[0], joule_rows[1]))
    total = seconds_since_process_start()
    if total is not None:
        print(f"\nWhole benchmark process: {total:.1f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
