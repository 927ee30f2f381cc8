"""serve-lm on loopback with the real SmolLM2: DSPy through LiteLLM, batching over HTTP, clean 4xx errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import dspy
import httpx
import pytest

from clauseloop.engine import LocalLM, ServerConfig, create_app
from clauseloop.engine.server import ServerThread

pytestmark = pytest.mark.real_model
NAME = "smollm2-135m-instruct"


@pytest.fixture(scope="module")
def server(engine):
    previous = os.environ.get("LITELLM_LOCAL_MODEL_COST_MAP")
    os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # offline: LiteLLM must not try to download prices
    with ServerThread(create_app(engine)) as running:
        yield running
    if previous is None:
        os.environ.pop("LITELLM_LOCAL_MODEL_COST_MAP")


@pytest.fixture(scope="module")
def client(server):
    with httpx.Client(base_url=server.url, timeout=300) as http:
        yield http


def chat(content: str = "Name a planet.", **settings) -> dict:
    return {"model": NAME, "messages": [{"role": "user", "content": content}], "max_tokens": 4, **settings}


@pytest.mark.parametrize("dspy_engine", ["litellm", "auto"])
def test_dspy_lm_answers_through_the_server_like_the_in_process_lm(server, dspy_engine):
    remote = dspy.LM(f"openai/{NAME}", api_base=server.url, api_key="local", engine=dspy_engine,
                     temperature=0.0, max_tokens=6, cache=False)
    assert remote("Name a planet.") == LocalLM(max_tokens=6, cache=False)("Name a planet.")


def test_models_lists_the_served_name(client):
    assert [m["id"] for m in client.get("/models").json()["data"]] == [NAME]


def test_n_choices_with_logprobs(client):
    body = client.post("/chat/completions", json=chat(n=2, temperature=0, logprobs=True, top_logprobs=1)).json()
    assert len(body["choices"]) == 2 and body["choices"][0]["message"]["content"]
    tokens = body["choices"][0]["logprobs"]["content"]
    assert tokens and all(t["logprob"] <= 0 and len(t["top_logprobs"]) == 1 for t in tokens)
    assert body["usage"]["completion_tokens"] >= len(tokens)


def test_concurrent_http_requests_share_batches(client, engine):
    steps_before, row_steps_before = engine.stats.steps, engine.stats.row_steps
    prompts = ["Name a planet.", "Name a colour.", "Name a fruit.", "Name a river."]
    with ThreadPoolExecutor(len(prompts)) as pool:
        replies = list(pool.map(lambda p: client.post("/chat/completions", json=chat(p, temperature=0)), prompts))
    assert all(r.status_code == 200 for r in replies)
    assert (engine.stats.row_steps - row_steps_before) / (engine.stats.steps - steps_before) > 1.5


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ({"model": NAME}, 400, "messages"),
        ({"model": NAME, "messages": []}, 400, "messages is empty"),
        (chat(max_tokens=0), 400, "max_tokens must be >= 1"),
        (chat(max_tokens=-5), 400, "max_tokens must be >= 1"),
        (chat("clause " * 9000), 400, "context window"),
        ({**chat(), "model": "gpt-4o"}, 404, f"use '{NAME}'"),
        (chat(stream=True, n=0), 400, "n must be between 1 and 16"),
        (chat(top_logprobs=2), 400, "requires logprobs"),
        ({"model": NAME, "messages": [{"role": "user", "content": [{"type": "image_url"}]}]}, 400, "text parts"),
    ],
)
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(client, body, status, message):
    reply = client.post("/chat/completions", json=body)
    assert reply.status_code == status
    assert message in reply.json()["error"]["message"]
    assert client.post("/chat/completions", json=chat(max_tokens=1)).status_code == 200


def test_an_api_key_is_enforced_when_configured(engine):
    with ServerThread(create_app(engine, ServerConfig(api_key="s3cret"))) as guarded:
        assert httpx.get(f"{guarded.url}/models").status_code == 401
        assert httpx.get(f"{guarded.url}/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_the_serve_lm_command_serves_until_interrupted(smollm2_dir):
    port = free_port()
    command = [sys.executable, "-m", "clauseloop", "serve-lm", NAME, "--port", str(port), "--name", "smol"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while True:
            assert process.poll() is None, process.stdout.read()
            try:
                models = httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=5).json()
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve-lm did not start within 180 s"
                time.sleep(0.5)
        assert models["data"][0]["id"] == "smol"
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=120,
                           json={**chat(max_tokens=2), "model": "smol"})
        assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"]
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=30)
