"""The report flow, and the command line that runs it.

python -m flows.report PROJECT_DIR [--out DIR] [--dry-run] [--only ID ...]
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from datetime import UTC, datetime
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.blocks.core import Block
from prefect.context import get_run_context
from prefect.futures import PrefectFuture, wait
from prefect.task_runners import ThreadPoolTaskRunner

from flows.objective import run_chapter
from joule.budget import Budget
from joule.cache import CallCache, FolderCache, StorageCache
from joule.engine import CallEngine, Prefetcher
from joule.errors import ConfigurationError, Problem, ProjectError
from joule.llm import Endpoint, ModelCaller, make_client, resolve_endpoint
from joule.plan import Plan, load_plan, refresh_selector
from joule.pricing import cost_usd
from joule.quote import cached_steps, estimate, format_quote, write_prompts
from joule.results import StepResult, StepStatus
from joule.sim import SimConfig, Simulator
from joule.steps import run_directly
from tasks import runtime
from tasks.report import aggregate, validate_project, write_report
from tasks.shared_limits import shared_credit

EXIT_OK, EXIT_FAILED_STEPS, EXIT_INVALID = 0, 1, 2


# Each chapter task holds a thread while its subflow runs. Few at a time: the
# calls do not wait for chapters (the prefetcher sends them), while many
# subflows writing at once lock Prefect's SQLite database, and its client then
# backs off for up to a minute or fails the run.
CONCURRENT_CHAPTER_SUBFLOWS = 3


@flow(
    name="joule-report",
    task_runner=ThreadPoolTaskRunner(max_workers=CONCURRENT_CHAPTER_SUBFLOWS),
)
def report_flow(
    project_dir: str,
    out_dir: str | None = None,
    only: list[str] | None = None,
    simulate: bool = False,
    base_url: str | None = None,
    refresh: list[str] | None = None,
) -> dict:
    """Write the report of one project folder; returns a summary of the run.

    `refresh` forces new calls instead of cached answers: ["all"], or the ids
    of tasks and chapters.
    """
    logger = get_run_logger()
    run_id = str(get_run_context().flow_run.id)
    started_at = datetime.now(UTC)
    plan = validate_project(project_dir, only)
    out = Path(out_dir) if out_dir else Path(project_dir) / "output"

    with contextlib.ExitStack() as stack:
        endpoint = _endpoint(plan, stack, simulate=simulate, base_url=base_url)
        logger.info("Model endpoint: %s", endpoint.description)
        caller = _caller(plan, endpoint, logger)
        engine = CallEngine(
            caller.call, max_workers=caller.max_in_flight, cache=open_cache(plan)
        )
        stack.callback(engine.shutdown)
        refresh_step = refresh_selector(refresh)
        state = runtime.RunState(
            run_id=run_id,
            plan=plan,
            engine=engine,
            total_steps=len(plan.steps()),
            refresh=refresh_step,
        )
        runtime.register(state)
        stack.callback(runtime.forget, run_id)

        run = plan.settings.run
        if run.concurrent_objectives and run.concurrent_tasks:
            Prefetcher(plan, engine, refresh=refresh_step).start()
        # Otherwise the user asked for one chapter or section at a time (to
        # debug), and the flow alone decides when each call is made.
        results = _run_chapters(run_id, plan)
        budget = caller.budget

    report = aggregate(
        plan,
        results,
        run_id=run_id,
        started_at=started_at,
        base_url=None if endpoint.simulated else endpoint.base_url,
        simulated=endpoint.simulated,
    )
    accounts = accounting(plan, report.steps, budget)
    paths = write_report(report, str(out), list(plan.settings.output.formats), accounts)
    return _summary(report.steps, out, paths, endpoint) | accounts


def _endpoint(
    plan: Plan, stack: contextlib.ExitStack, *, simulate: bool, base_url: str | None
) -> Endpoint:
    """The configured endpoint, or a simulator that lives as long as the stack."""
    if not simulate:
        return resolve_endpoint(plan.settings.llm.base_url, base_url=base_url)
    simulator = stack.enter_context(Simulator(SimConfig()))
    return Endpoint(simulator.base_url, "not-needed", simulated=True)


def _caller(plan: Plan, endpoint: Endpoint, logger) -> ModelCaller:
    """The run's model caller, its limits shared with other runs when needed."""
    caller = ModelCaller(
        make_client(endpoint, plan.settings.llm.timeout_s), plan.settings, logger=logger
    )
    if _shares_limits(plan):
        largest = max(
            q.input_tokens + q.output_tokens for c in estimate(plan) for q in c.steps
        )
        caller.shared = shared_credit(
            endpoint.base_url,
            plan.settings.llm.model,
            caller.requests_per_minute,
            caller.tokens_per_minute,
            largest_call_tokens=largest,
        )
        logger.info("Limits shared with other runs through Prefect")
    return caller


def _run_chapters(run_id: str, plan: Plan) -> list[StepResult]:
    """Submit every chapter as soon as the chapters it depends on are done."""
    submitted: dict[str, PrefectFuture[list[StepResult]]] = {}
    sequential = not plan.settings.run.concurrent_objectives
    for wave in plan.chapter_order():
        for objective_id in wave:
            objective = plan.objective(objective_id)
            future = run_chapter.submit(
                run_id,
                objective_id,
                [submitted[dep] for dep in objective.depends_on],
            )
            if sequential:
                wait([future])
            submitted[objective_id] = future

    results: list[StepResult] = []
    lost: list[str] = []
    for objective_id, future in submitted.items():
        try:
            results.extend(future.result())
        except Exception as exc:
            lost.append(objective_id)
            get_run_logger().error(
                "Chapter %s could not be recorded by Prefect: %s", objective_id, exc
            )
    if lost:
        results += _finish_without_prefect(run_id, plan, results)
    return results


def _finish_without_prefect(
    run_id: str, plan: Plan, recorded: list[StepResult]
) -> list[StepResult]:
    """The results Prefect lost, from the call engine: no answer is paid again.

    Prefect's local SQLite server can fail a task run under load ("database
    is locked"); the calls themselves had succeeded, so the report is finished
    from the same engine instead of failing the run.
    """
    state = runtime.get(run_id)
    done = {r.key for r in recorded}
    missing = [
        r for r in run_directly(plan, state.engine, state.refresh) if r.key not in done
    ]
    get_run_logger().warning(
        "Finished %d steps outside Prefect; they have no task runs in the UI",
        len(missing),
    )
    return missing


def _shares_limits(plan: Plan) -> bool:
    """Whether other processes may call the same provider at the same time.

    Runs from a deployment may run side by side on several workers; a run
    from the command line is alone unless report.toml says otherwise, and
    then pays nothing for coordination.
    """
    shared = plan.settings.limits.shared
    if shared is not None:
        return shared
    return get_run_context().flow_run.deployment_id is not None


def open_cache(plan: Plan) -> CallCache | None:
    """The project's call cache: a Prefect block when named, else a local folder."""
    settings = plan.settings.cache
    if not settings.enabled:
        return None
    if settings.block:
        block = Block.load(settings.block)
        return StorageCache(block.read_path, block.write_path)
    return FolderCache(plan.project_dir / settings.path)


def accounting(plan: Plan, steps: list[StepResult], budget: Budget) -> dict:
    """What the run spent, what the cache saved, and what was left undone."""
    prices = plan.settings.llm.prices
    cached = [s for s in steps if s.cached]
    saved = sum(
        cost_usd(s.model, s.prompt_tokens, s.completion_tokens, prices) for s in cached
    )
    not_run = {s.key for s in steps if s.status is not StepStatus.OK}
    # Quoting renders every prompt again: only worth it when something is left.
    quotes = estimate(plan) if not_run else []
    remaining = [
        q for chapter in quotes for q in chapter.steps if q.step.key in not_run
    ]
    return {
        "cache": {"hits": len(cached), "saved_usd": round(saved, 6)},
        "spent_usd": round(sum(s.cost_usd for s in steps), 6),
        "budget": {
            "max_cost_usd": budget.max_cost_usd,
            "max_tokens_total": budget.max_tokens_total,
            "calls_refused": budget.refused,
        },
        "remaining": {
            "steps": len(remaining),
            "estimated_cost_usd": round(sum(q.cost_usd for q in remaining), 6),
        },
    }


def _summary(
    steps: list[StepResult], out: Path, paths: list[str], endpoint: Endpoint
) -> dict:
    count = {status: 0 for status in StepStatus}
    for step in steps:
        count[step.status] += 1
    return {
        "out_dir": str(out),
        "files": paths,
        "steps": len(steps),
        "ok": count[StepStatus.OK],
        "failed": count[StepStatus.FAILED],
        "skipped": count[StepStatus.SKIPPED],
        # Tokens paid for in this run; cached answers are counted apart.
        "prompt_tokens": sum(s.prompt_tokens for s in steps if not s.cached),
        "completion_tokens": sum(s.completion_tokens for s in steps if not s.cached),
        "cost_usd": round(sum(s.cost_usd for s in steps), 6),
        "cached": sum(s.cached for s in steps),
        "endpoint": endpoint.description,
        "failures": [
            f"{s.task_id} step {s.step}: {s.status}: {s.error}"
            for s in steps
            if s.status is not StepStatus.OK
        ],
    }


# ---------------------------------------------------------------------------
# Command line

EPILOG = """\
examples:
  python -m flows.report examples/regional-energy --simulate
      run the example offline against Joule's built-in simulator
  OPENAI_API_KEY=sk-... python -m flows.report my-report --out /tmp/report
      run a project on the OpenAI API, writing to /tmp/report
  python -m flows.report my-report --dry-run
      render every prompt and print the plan; nothing is sent

exit status: 0 every step succeeded, 1 the report was written but some steps
failed, 2 the project or the command line is invalid (nothing was sent)
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flows.report",
        description="Write a report from a Joule project folder (report.toml, "
        "a prompt sheet and data files).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("project_dir", metavar="PROJECT_DIR", type=Path)
    parser.add_argument(
        "--out", type=Path, help="output folder (default: PROJECT_DIR/output)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="render every prompt, write them to the output folder and print the "
        "plan with token estimates; sends nothing",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        metavar="ID",
        help="run only these objective or task ids (and the chapters they need)",
    )
    parser.add_argument(
        "--refresh",
        nargs="*",
        metavar="ID",
        help="call the model again instead of using cached answers: for every "
        "step, or only for these task or chapter ids",
    )
    parser.add_argument(
        "--simulate",
        action="store_true",
        help="answer with Joule's built-in OpenAI-compatible simulator (offline)",
    )
    parser.add_argument(
        "--base-url", help="OpenAI-compatible endpoint (overrides report.toml)"
    )
    parser.add_argument(
        "--debug", action="store_true", help="show tracebacks of unexpected errors"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _main(args)
    except (ProjectError, ConfigurationError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            traceback.print_exc()
        else:
            print(
                f"error: {type(exc).__name__}: {exc}\n(run again with --debug for "
                "the traceback)",
                file=sys.stderr,
            )
        return EXIT_FAILED_STEPS


def _main(args: argparse.Namespace) -> int:
    project = args.project_dir
    if not project.is_dir():
        print(
            f"error: {project} is not a folder; PROJECT_DIR is the folder that "
            "holds report.toml",
            file=sys.stderr,
        )
        return EXIT_INVALID

    try:
        plan = load_plan(project, only=args.only)
    except ProjectError:
        raise
    except Exception as exc:
        # Nothing was sent yet: whatever failed, it is the project that could
        # not be read, and the contract says so with exit status 2.
        if args.debug:
            traceback.print_exc()
        raise ProjectError(
            [Problem(str(project), f"could not be read: {type(exc).__name__}: {exc}")]
        ) from exc
    out = args.out or project / "output"
    if args.dry_run:
        cache = open_cache(plan)
        refresh = refresh_selector(refresh_ids(args.refresh))
        cached = cached_steps(plan, cache, refresh) if cache else set()
        folder = write_prompts(plan, out)
        print(format_quote(plan, estimate(plan, cached), folder))
        return EXIT_OK

    if not args.simulate:
        # Fail before Prefect starts, with the advice on how to configure.
        resolve_endpoint(plan.settings.llm.base_url, base_url=args.base_url)

    summary = report_flow(
        project_dir=str(project.resolve()),
        out_dir=str(out.resolve()),
        only=args.only,
        simulate=args.simulate,
        base_url=args.base_url,
        refresh=refresh_ids(args.refresh),
    )
    print_summary(summary)
    return EXIT_OK if summary["failed"] + summary["skipped"] == 0 else EXIT_FAILED_STEPS


def refresh_ids(option: list[str] | None) -> list[str] | None:
    """--refresh alone means every step; with ids, only those."""
    if option is None:
        return None
    return option or ["all"]


def print_summary(summary: dict) -> None:
    """One screen at the end: what ran, what it cost, what is missing, where."""
    cache = summary["cache"]
    print()
    print(
        f"Steps: {summary['steps']}  ok: {summary['ok']}  failed: "
        f"{summary['failed']}  skipped: {summary['skipped']}  "
        f"from cache: {cache['hits']}"
    )
    print(
        f"Paid: {summary['prompt_tokens']:,} tokens in, "
        f"{summary['completion_tokens']:,} out, ${summary['cost_usd']:.4f}; "
        f"the cache saved ${cache['saved_usd']:.4f}"
    )
    print(f"Model: {summary['endpoint']}")
    for failure in summary["failures"][:10]:
        print(f"  ! {failure}")
    if len(summary["failures"]) > 10:
        print(f"  ... and {len(summary['failures']) - 10} more (see report.csv)")
    remaining = summary["remaining"]
    if remaining["steps"]:
        print(
            f"Not done: {remaining['steps']} steps, up to "
            f"${remaining['estimated_cost_usd']:.4f} at list prices; run the "
            "same command again to do only these."
        )
    print(f"Report: {Path(summary['out_dir']) / 'report.md'}")


if __name__ == "__main__":
    sys.exit(main())
