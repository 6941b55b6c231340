"""Joule's domain: from a report project folder to a report, free of Prefect."""

__version__ = "0.1.0"
