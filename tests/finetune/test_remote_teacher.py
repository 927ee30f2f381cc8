"""A real teacher through LiteLLM strings: the data path against `clauseloop serve-lm` over HTTP (no mock).

The teacher role is ``openai/smol`` at the server's URL (``CLAUSELOOP_TEACHER`` / ``CLAUSELOOP_TEACHER_API_BASE``,
as a user would point it at vLLM or any OpenAI-compatible server); the server runs SmolLM2 in its own process.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from typer.testing import CliRunner

from clauseloop.cli import app

pytestmark = pytest.mark.real_model
SERVED = "smol"
runner = CliRunner()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServeLM:
    """`clauseloop serve-lm` in a subprocess, started and stopped on demand on a fixed port."""

    def __init__(self, port: int):
        self.port, self.process = port, None
        self.url = f"http://127.0.0.1:{port}/v1"

    def start(self) -> None:
        command = [sys.executable, "-m", "clauseloop", "serve-lm", "smollm2-135m-instruct", "--port", str(self.port),
                   "--name", SERVED]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        deadline = time.monotonic() + 180
        while True:
            assert self.process.poll() is None, self.process.stdout.read()
            try:
                httpx.get(f"{self.url}/models", timeout=5).raise_for_status()
                return
            except httpx.TransportError:
                assert time.monotonic() < deadline, "serve-lm did not start within 180 s"
                time.sleep(0.5)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            self.process.wait(timeout=30)


@pytest.fixture(scope="module")
def server(smollm2_dir):
    running = ServeLM(free_port())
    running.start()
    yield running
    running.stop()


@pytest.fixture
def remote_teacher(server, monkeypatch):
    """The teacher role pointed at the server, with an empty DSPy cache: every teacher answer must come over HTTP
    (DSPy's cache key leaves out the URL, so answers cached by an earlier run would hide a dead server)."""
    import dspy
    from dspy.clients.cache import Cache

    monkeypatch.setattr(dspy, "cache", Cache(enable_disk_cache=False, enable_memory_cache=True, disk_cache_dir=None))
    monkeypatch.setenv("CLAUSELOOP_TEACHER", f"openai/{SERVED}")
    monkeypatch.setenv("CLAUSELOOP_TEACHER_API_BASE", server.url)
    monkeypatch.setenv("OPENAI_API_KEY", "local")  # serve-lm runs without a key; the client wants one set
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    return server


def build(out, contracts: int, sources: str = "teacher", *extra: str):
    return runner.invoke(app, ["finetune", "data", "--sources", sources, "--limit-contracts", str(contracts),
                               "--trace-questions", "3", "--out", str(out), "--json", *extra])


def test_teacher_traces_come_from_the_server_and_a_dead_server_is_survived(remote_teacher, tmp_path):
    out = tmp_path / "remote.jsonl"
    first = build(out, 1)
    assert first.exit_code == 0, first.output
    counts = json.loads(first.stdout)["counts"]["teacher"]
    assert counts["examples"] == 3 and counts["failed"] == 0  # three real answers over HTTP
    rows_before = out.read_text()

    remote_teacher.stop()
    try:
        down = build(out, 2)
        assert down.exit_code == 2
        message = " ".join(down.output.split())
        assert "teacher LM" in message and remote_teacher.url in message and "re-run" in message
        assert out.read_text() == rows_before  # nothing lost
    finally:
        remote_teacher.start()
    resumed = build(out, 2)
    assert resumed.exit_code == 0, resumed.output
    report = json.loads(resumed.stdout)
    assert report["units_done"]["teacher"] == 2 and report["counts"]["teacher"]["examples"] == 6


def test_optimize_uses_the_remote_teacher(remote_teacher, tmp_path):
    out = tmp_path / "compiled"
    result = runner.invoke(app, ["optimize", "--optimizer", "bootstrap", "--limit", "4", "--val-limit", "2",
                                 "--max-calls", "60", "--no-gate", "--out", str(out), "--json"])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["teacher"] == {"spec": "teacher", "model": f"openai/{SERVED}", "api_base": remote_teacher.url}
    assert manifest["lm_calls"]["requests"]["teacher"] > 0  # bootstrapping asked the server


def test_self_instruct_asks_the_remote_teacher(remote_teacher, tmp_path):
    result = build(tmp_path / "synthetic.jsonl", 1, "synthetic")
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)["counts"]["synthetic"]
    assert counts["generated"] > 0
    dropped = sum(counts[name] for name in ("parse_failed", "too_similar", "round_trip_failed", "judge_rejected"))
    assert counts["generated"] == counts["kept"] + dropped
