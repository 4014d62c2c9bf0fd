"""Librarian: shared pieces used by both the Dagster code location and the HTTP API.

Nothing in this package imports Dagster at module level, so the API can import the job-record
schema, the catalog and the URL rules without paying for Dagster's import.
"""
