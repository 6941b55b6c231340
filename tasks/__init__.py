"""Prefect tasks: thin wrappers that put the domain's steps on the orchestrator."""
