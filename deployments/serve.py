"""Serve the report flow so that runs can be started from the Prefect UI.

    python -m deployments.serve [--project examples/regional-energy] [--simulate]

Keeps running and executes the runs that the UI (or a schedule) creates; the
UI shows a form with the flow's parameters. Needs a Prefect server
(`prefect server start`) and PREFECT_API_URL pointing at it.
"""

from __future__ import annotations

import argparse

from flows.report import report_flow


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m deployments.serve")
    parser.add_argument("--project", default="examples/regional-energy")
    parser.add_argument("--simulate", action="store_true")
    parser.add_argument("--cron", help="also run on this schedule, e.g. '0 6 1 * *'")
    args = parser.parse_args(argv)
    report_flow.serve(
        name="joule-report",
        parameters={"project_dir": args.project, "simulate": args.simulate},
        cron=args.cron,
        tags=["joule"],
    )


if __name__ == "__main__":
    main()
