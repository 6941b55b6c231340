"""Deployment helpers: register the report flow's deployments from prefect.yaml."""
