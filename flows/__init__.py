"""Prefect flows: the report (parent) flow, the chapter subflow and the CLI."""
