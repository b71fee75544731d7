"""The ASGI app: FastAPI for its generated OpenAPI document and its dependency-checked
scopes, one store opened for the app's life, every error as problem+json."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from collector.api import openapi, pages, problems, v1_billing, v1_ops, v1_reads, web, web_alarms
from collector.api.auth import Sessions
from collector.api.guard import Guard
from collector.api.throttle import LoginThrottle
from collector.config.settings import Settings

VERSION = "1"


def create_app(settings: Settings, store: Any, *, close_store: bool = False) -> FastAPI:
    """`store` is migrated already; with `close_store` the app closes it on shutdown."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if close_store:
                await store.close()

    app = FastAPI(title="meter-collector", version=VERSION, lifespan=lifespan,
                  description="Validated reads, collection, flags, VEE and billing of a "
                              "meter-collector head-end. Every endpoint but /healthz needs "
                              "'Authorization: Bearer TOKEN' (collector token create).")
    app.state.store = store
    app.state.settings = settings
    app.state.sessions = Sessions(settings.api.session_hours, settings.api.secure_cookies)
    app.state.login_throttle = LoginThrottle()
    problems.install(app)

    @app.get("/healthz", tags=["health"])
    async def healthz(request: Request) -> dict[str, str]:
        await request.app.state.store.ping()
        return {"status": "ok"}

    app.include_router(v1_reads.router)
    app.include_router(v1_ops.router)
    app.include_router(v1_billing.router)
    app.include_router(web.router)
    app.include_router(web_alarms.router)
    pages.mount_static(app)
    app.add_middleware(Guard)
    openapi.install(app)
    return app
