"""Prefect flows: the report (parent) flow, the chapter subflow and the CLI."""

import os

# The temporary local server would try to send usage telemetry at start-up;
# on a machine without internet that only prints an alarming error.
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
