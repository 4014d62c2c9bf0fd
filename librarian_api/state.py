"""What the handlers share, built once in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from librarian.catalog import Catalog
from librarian.job_store import ApiJobStore
from librarian.settings import Settings
from librarian_api.dagster_client import DagsterSubmitter


@dataclass
class AppState:
    settings: Settings
    jobs: ApiJobStore
    catalog: Catalog
    dagster: DagsterSubmitter


def app_state(request: Request) -> AppState:
    state: AppState = request.app.state.librarian
    return state
