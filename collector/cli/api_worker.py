"""The app one `collector api` process serves, built from the config file named in the
environment: uvicorn starts each worker process by import, not by handing it an object."""

from __future__ import annotations

import os

from fastapi import FastAPI

from collector.api.app import create_app
from collector.cli.context import load_settings, plain_store

CONFIG_ENV = "COLLECTOR_API_CONFIG"
FACTORY = "collector.cli.api_worker:app"


def app() -> FastAPI:
    settings = load_settings(os.environ[CONFIG_ENV])
    return create_app(settings, plain_store(settings), close_store=True)
