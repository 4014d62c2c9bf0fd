"""Librarian's core: everything but the Dagster code location and the HTTP service.

Rooms (see the README's Layout): settings, errors and canonical URLs at the bottom; the run
contract and job records; storage and embedding; content processing; Dagster orchestration; the
command line. Only ``orchestration/`` may use Dagster's internals, and nothing outside it imports
Dagster or Starlette at import time, so the API imports the job schema, the catalog and the URL
rules without paying for Dagster's import.
"""
