"""`clauseloop serve` with the real local SmolLM2: a small review job, ask, and the student over the OpenAI API."""

from __future__ import annotations

import json

import pytest

from tests.serve.conftest import wait_for_job

pytestmark = pytest.mark.real_model
CATEGORIES = ["Parties", "Governing Law"]


@pytest.fixture(scope="module")
def contract_id(client, short_contract):
    return client.post("/api/contracts", json={"text": short_contract.text}).json()["id"]


def test_a_review_job_reports_progress_and_spans_with_offsets(client, contract_id, short_contract):
    started = client.post("/api/review", json={"contract_id": contract_id, "categories": CATEGORIES})
    assert started.status_code == 202
    job = started.json()
    assert job["total"] == 2 and job["status"] in ("queued", "running")
    done = wait_for_job(client, job["id"])
    assert done["status"] == "done" and done["done"] == 2 and set(done["results"]) == set(CATEGORIES)
    assert done["model_version"].startswith("smollm2-135m-instruct@")
    for result in done["results"].values():
        assert isinstance(result["gated"], bool) and "error" not in result
        for span in result["spans"]:
            assert short_contract.text[span["start"] : span["end"]] == span["text"] and 0 <= span["confidence"] <= 1
    with client.stream("GET", f"/api/review/{job['id']}/events") as events:  # a finished job: one `done` event
        lines = [line for line in events.iter_lines() if line]
    assert lines[0] == "event: done" and json.loads(lines[1].removeprefix("data: "))["status"] == "done"


def test_ask_a_category_and_a_free_question(client, contract_id, short_contract):
    reply = client.post("/api/ask", json={"contract_id": contract_id, "category": "parties"})  # any case
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["category"] == "Parties" and body["model_version"].startswith("smollm2-135m-instruct@")
    assert all(short_contract.text[s["start"] : s["end"]] == s["text"] for s in body["spans"])
    free = client.post("/api/ask", json={"contract_id": contract_id, "question": "Who signed this agreement?"})
    assert free.status_code == 200 and free.json()["question"] == "Who signed this agreement?"
    assert free.json()["gated"] is False
    assert client.get("/api/models").json()["version"] == body["model_version"]


def test_the_student_speaks_the_openai_api_with_streaming(server):
    openai = pytest.importorskip("openai")
    student = openai.OpenAI(base_url=f"{server.url}/v1", api_key="unused", max_retries=0, timeout=300)
    name = student.models.list().data[0].id
    messages = [{"role": "user", "content": "Name a planet."}]
    whole = student.chat.completions.create(model=name, messages=messages, max_tokens=6, temperature=0)
    stream = student.chat.completions.create(model=name, messages=messages, max_tokens=6, temperature=0,
                                             stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content and text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == whole.choices[0].finish_reason
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens
    completion = student.completions.create(model=name, prompt="The capital of France is", max_tokens=4,
                                            temperature=0, logprobs=1)
    assert completion.choices[0].text and len(completion.choices[0].logprobs.tokens) >= 1
    streamed = "".join(c.choices[0].text for c in student.completions.create(
        model=name, prompt="The capital of France is", max_tokens=4, temperature=0, stream=True))
    assert streamed == completion.choices[0].text
