"""`clauseloop serve`: the HTTP API and the review page, in one FastAPI app (``create_app(ServeConfig(...))``).

* ``POST /api/contracts`` (JSON ``{text, title?}`` or a multipart ``.txt`` upload as ``file``) → ``{id, ...}``,
  the id being the hash of the text (the same text always gets the same id);
* ``POST /api/review`` ``{contract_id, categories?}`` → a job (202); ``GET /api/review/{job}`` → progress and
  per-category results (spans with offsets and confidence, ``gated``); ``GET /api/review/{job}/events`` → the
  same as server-sent events (``progress`` per category, then ``done``);
* ``POST /api/ask`` ``{contract_id, category | question}`` → spans;
* ``POST /api/feedback`` (a :class:`~clauseloop.feedback.FeedbackRecord` as JSON) → ``{id, flags}`` (201);
  ``GET /api/feedback/stats``;
* ``GET /api/models``, ``GET /api/categories``, ``GET /healthz``; the page at ``/``;
* ``GET /api/reports``: the evaluation reports (:mod:`clauseloop.serve.reports`), shown with the model at ``/reports``;
* ``/v1/chat/completions``, ``/v1/completions``, ``/v1/models``: the local student through the engine's
  OpenAI-compatible app (:mod:`clauseloop.engine.server`), built on first use.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Body, Depends, FastAPI, Request
from fastapi.responses import FileResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from clauseloop.data import BUILTIN_CATEGORIES, CATEGORY_NAMES, canonical_name
from clauseloop.data.text import NotATextContract
from clauseloop.feedback import FeedbackError, FeedbackRecord, FeedbackStore
from clauseloop.serve.config import ServeConfig
from clauseloop.serve.contracts import ContractStore
from clauseloop.serve.http import (
    ApiError,
    BodyLimit,
    OpenAIRoutes,
    check_key,
    install_error_handlers,
    sse_event,
)
from clauseloop.serve.jobs import ReviewJobs
from clauseloop.serve.reports import load_reports, reports_directory
from clauseloop.serve.service import Answerer

logger = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).with_name("static")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ContractIn(_Strict):
    text: str
    title: str | None = None


class ReviewIn(_Strict):
    contract_id: str
    categories: list[str] | None = Field(default=None, description="CUAD categories; default: all 41")


class AskIn(_Strict):
    contract_id: str
    category: str | None = None
    question: str | None = Field(default=None, max_length=2000)


class Services:
    """What the routes share: the stores, the answering LM and the review jobs."""

    def __init__(self, config: ServeConfig, answerer: Answerer | None = None):
        self.config = config
        self.contracts = ContractStore(config.db)
        self.answerer = answerer or Answerer(config)
        self.versions: set[str] = set()
        self.feedback = FeedbackStore(config.db, contract_known=self.contracts.__contains__,
                                      model_known=self.versions.__contains__)
        self.jobs = ReviewJobs(self.answerer.ask, self.version, config.review_threads, config.max_finished_jobs)

    def version(self) -> str:
        version = self.answerer.model_version()
        self.versions.add(version)
        return version

    def contract(self, contract_id: str):
        try:
            return self.contracts.get(contract_id)
        except KeyError as error:
            raise ApiError(404, str(error.args[0]), "contract_id") from None

    def close(self) -> None:
        self.jobs.close()
        self.feedback.close()
        self.contracts.close()


def create_app(config: ServeConfig | None = None, *, answerer: Answerer | None = None) -> FastAPI:
    """The app; ``answerer`` replaces the student (tests)."""
    config = config or ServeConfig()
    services = Services(config, answerer)
    app = FastAPI(title="clauseloop", version="1", docs_url="/docs", redoc_url=None)
    app.state.services = services
    install_error_handlers(app)

    def authorized(request: Request) -> None:
        check_key(request, config.api_key)

    api = APIRouter(prefix="/api", dependencies=[Depends(authorized)])
    _contract_routes(api, services)
    _review_routes(api, services)
    _feedback_routes(api, services)
    app.include_router(api)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"status": "ok", "jobs": services.jobs.counts(), "feedback": services.feedback.count()}

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})

    @app.get("/reports", include_in_schema=False)
    async def reports_page() -> FileResponse:
        return FileResponse(STATIC_DIR / "reports.html", headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    if config.openai_api:
        app.add_middleware(OpenAIRoutes, build=lambda: _openai_app(services))
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    return app


def _openai_app(services: Services) -> FastAPI:
    """The engine's OpenAI-compatible app over the student's engine, with this server's key."""
    from clauseloop.engine.config import ServerConfig
    from clauseloop.engine.server import create_app as create_openai_app

    if not services.answerer.is_local:
        raise ApiError(404, f"the student {services.answerer.model_name!r} is not a local model; call it directly")
    engine = services.answerer.local_engine(load=True)
    return create_openai_app(engine, ServerConfig(api_key=services.config.api_key))


def _contract_routes(api: APIRouter, services: Services) -> None:
    @api.post("/contracts", status_code=201)
    async def add_contract(request: Request) -> dict:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            text, title = await _uploaded(request)
        else:
            body = _parsed(ContractIn, await request.body())
            text, title = body.text, body.title
        try:
            contract, created = await asyncio.to_thread(services.contracts.add, text, title)
        except NotATextContract as error:
            raise ApiError(400, str(error), "file" if isinstance(text, bytes) else "text") from None
        return {"id": contract.id, "title": contract.title, "chars": len(contract.text), "created": created}

    @api.get("/contracts")
    async def list_contracts() -> dict:
        return {"contracts": services.contracts.summaries()}

    @api.get("/contracts/{contract_id}")
    async def get_contract(contract_id: str) -> dict:
        contract = services.contract(contract_id)
        return {"id": contract.id, "title": contract.title, "text": contract.text}

    @api.get("/categories")
    async def categories() -> dict:
        return {"categories": [{"name": c.name, "description": c.description} for c in BUILTIN_CATEGORIES]}

    @api.get("/models")
    async def models() -> dict:
        return await asyncio.to_thread(services.answerer.info)

    @api.get("/reports")
    async def reports() -> dict:
        directory = reports_directory(services.config.reports_dir)
        found = await asyncio.to_thread(load_reports, directory)
        return {"directory": str(directory) if directory else None, "reports": found}


def _review_routes(api: APIRouter, services: Services) -> None:
    @api.post("/review", status_code=202)
    async def review(body: ReviewIn) -> dict:
        contract = services.contract(body.contract_id)
        categories = _categories(body.categories)
        return services.jobs.submit(contract, categories)

    @api.get("/review/{job_id}")
    async def review_status(job_id: str) -> dict:
        return _job(services, job_id)

    @api.get("/review/{job_id}/events")
    async def review_events(job_id: str) -> StreamingResponse:
        _job(services, job_id, results=False)  # 404 before the stream starts
        return StreamingResponse(_job_events(services, job_id), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @api.post("/ask")
    async def ask(body: AskIn) -> dict:
        contract = services.contract(body.contract_id)
        category = canonical_name(body.category) if body.category else None
        if category and category not in CATEGORY_NAMES:
            raise ApiError(422, f"unknown category {body.category!r}; GET /api/categories lists them, or send "
                                "a free `question` instead", "category")
        if bool(category) == bool(body.question and body.question.strip()):
            raise ApiError(422, "send exactly one of `category` and `question`", "category")
        result = await asyncio.to_thread(services.answerer.ask, contract, category, body.question)
        version = await asyncio.to_thread(services.version)
        key = {"category": category} if category else {"question": body.question}
        return {"contract_id": contract.id, **key, **result, "model_version": version}


def _feedback_routes(api: APIRouter, services: Services) -> None:
    @api.post("/feedback", status_code=201)
    async def feedback(body: dict[str, Any] = Body(...)) -> dict:
        body.pop("id", None)
        body.pop("flags", None)  # the server flags, not the client
        try:
            record = FeedbackRecord.from_dict(body)
            record_id = await asyncio.to_thread(services.feedback.add, record)
        except FeedbackError as error:
            match = re.match(r"feedback\.([\w\[\]\.]+)", str(error))
            raise ApiError(422, str(error), match.group(1) if match else "body") from None
        return {"id": record_id, "flags": list(services.feedback.get(record_id).flags)}

    @api.get("/feedback/stats")
    async def feedback_stats() -> dict:
        return await asyncio.to_thread(services.feedback.stats)


def _categories(requested: list[str] | None) -> list[str]:
    if requested is None:
        return list(CATEGORY_NAMES)
    if not requested:
        raise ApiError(422, "categories is empty; omit it for all 41, or name some", "categories")
    names = []
    for index, name in enumerate(requested):
        canonical = canonical_name(name)
        if canonical not in CATEGORY_NAMES:
            raise ApiError(422, f"unknown category {name!r}; GET /api/categories lists them", f"categories[{index}]")
        if canonical not in names:
            names.append(canonical)
    return names


def _job(services: Services, job_id: str, results: bool = True) -> dict:
    try:
        return services.jobs.snapshot(job_id, results)
    except KeyError as error:
        raise ApiError(404, str(error.args[0]), "job") from None


async def _job_events(services: Services, job_id: str, poll: float = 0.25):
    """``progress`` whenever a category finishes, then ``done`` with the whole job (or ``error`` if it expired)."""
    sent_revision, sent_done = -1, -1
    while True:
        try:
            job = services.jobs.snapshot(job_id)
        except KeyError as error:
            yield sse_event("error", {"message": str(error.args[0])})
            return
        if job["status"] in ("done", "failed"):
            yield sse_event("done", job)
            return
        if job["revision"] != sent_revision and job["done"] != sent_done:
            latest = {k: job[k] for k in ("id", "status", "done", "total", "model_version")}
            yield sse_event("progress", {**latest, "results": job["results"]})
            sent_done = job["done"]
        sent_revision = job["revision"]
        await asyncio.sleep(poll)


async def _uploaded(request: Request) -> tuple[bytes, str | None]:
    form = await request.form()
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise ApiError(422, "multipart upload without a `file` part; send the .txt as `file`", "file")
    data = await upload.read()
    title = form.get("title") if isinstance(form.get("title"), str) else None
    return data, title or Path(upload.filename or "").stem or None


def _parsed(model: type[BaseModel], raw: bytes) -> Any:
    from fastapi.exceptions import RequestValidationError

    try:
        return model.model_validate_json(raw or b"")
    except ValidationError as error:
        raise RequestValidationError(
            [{**e, "loc": ("body", *e["loc"])} for e in error.errors(include_url=False)]
        ) from None
