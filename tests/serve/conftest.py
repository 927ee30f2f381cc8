"""A real `clauseloop serve` app on 127.0.0.1 (uvicorn in a thread, a free port) with the untrained SmolLM2."""

from __future__ import annotations

import os

import httpx
import pytest

STUDENT = "base"  # the untrained SmolLM2: always there, unlike the shipped adapter
KEY = "s3cret-key"


class RunningServer:
    def __init__(self, config):
        from clauseloop.engine.server import ServerThread
        from clauseloop.serve import create_app

        self.app = create_app(config)
        self._thread = ServerThread(self.app)

    def __enter__(self) -> "RunningServer":
        self._thread.__enter__()
        self.url = f"http://127.0.0.1:{self._thread.port}"
        return self

    def __exit__(self, *exc_info) -> None:
        self._thread.__exit__(*exc_info)
        self.app.state.services.close()


@pytest.fixture(scope="session")
def offline_litellm():
    previous = os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP")
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # LiteLLM must not fetch prices
    yield
    if previous is None:
        os.environ.pop("LITELLM_LOCAL_MODEL_COST_MAP", None)


@pytest.fixture(scope="session")
def server(tmp_path_factory, offline_litellm):
    from clauseloop.serve import ServeConfig

    db = tmp_path_factory.mktemp("serve") / "clauseloop.db"
    with RunningServer(ServeConfig(db=str(db), student=STUDENT, port=0)) as running:
        yield running


@pytest.fixture(scope="session")
def client(server):
    with httpx.Client(base_url=server.url, timeout=600) as http:
        yield http


@pytest.fixture(scope="session")
def short_contract():
    """The shortest demo contract (about 3,600 characters)."""
    from clauseloop.data import load_cuad

    return min(load_cuad().contracts.values(), key=lambda c: len(c.text))


def wait_for_job(client: httpx.Client, job_id: str, timeout: float = 300) -> dict:
    import time

    deadline = time.monotonic() + timeout
    while True:
        job = client.get(f"/api/review/{job_id}").json()
        if job["status"] in ("done", "failed"):
            return job
        assert time.monotonic() < deadline, f"review {job_id} not done in {timeout} s: {job}"
        time.sleep(0.5)
