"""`clauseloop serve` over real HTTP: contracts, bad input (400/401/413/422), feedback under load, the page."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serve.conftest import KEY, RunningServer


def test_a_contract_gets_a_stable_id_by_json_or_upload(client):
    text = "MASTER AGREEMENT\nThis Agreement is governed by the laws of Ohio.\n"
    first = client.post("/api/contracts", json={"text": text, "title": "Master"})
    assert first.status_code == 201 and first.json()["created"] and first.json()["title"] == "Master"
    upload = client.post("/api/contracts", files={"file": ("master.txt", text.encode(), "text/plain")})
    assert upload.status_code == 201 and upload.json()["id"] == first.json()["id"] and not upload.json()["created"]
    stored = client.get(f"/api/contracts/{first.json()['id']}").json()
    assert stored["text"] == text
    assert client.get("/api/contracts/feedfeedfeedfeed").status_code == 404


@pytest.mark.parametrize(
    "request_kwargs",
    [
        {"json": {"text": ""}},
        {"json": {"text": "   \n\t "}},
        {"files": {"file": ("empty.txt", b"", "text/plain")}},
        {"files": {"file": ("tool.exe", bytes(range(256)) * 4, "application/octet-stream")}},
        {"files": {"file": ("scan.pdf", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj", "application/pdf")}},
        {"files": {"file": ("latin1.txt", "Vertrag über Lieferung".encode("latin-1"), "text/plain")}},
    ],
    ids=["empty-json", "blank-json", "empty-file", "binary-file", "pdf", "not-utf8"],
)
def test_empty_or_binary_contracts_are_refused_with_400(client, request_kwargs):
    reply = client.post("/api/contracts", **request_kwargs)
    assert reply.status_code == 400
    assert reply.json()["error"]["message"].startswith("not a text contract")


def test_an_oversized_body_gets_413_by_length_or_while_streaming(client):
    big = {"text": "x" * 2_100_000}
    reply = client.post("/api/contracts", json=big)
    assert reply.status_code == 413 and "limit" in reply.json()["error"]["message"]

    def chunks():  # no Content-Length: the limit applies as the body arrives
        payload = json.dumps(big).encode()
        for start in range(0, len(payload), 65536):
            yield payload[start : start + 65536]

    streamed = client.post("/api/contracts", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert client.get("/healthz").status_code == 200  # still serving


def test_a_one_megabyte_contract_is_accepted(client):
    text = ("The Supplier shall deliver the goods within thirty days of each order. " * 14_100)[:1_000_000]
    reply = client.post("/api/contracts", json={"text": text})
    assert reply.status_code == 201 and reply.json()["chars"] == 1_000_000


@pytest.mark.parametrize(
    ("path", "body", "field", "message"),
    [
        ("/api/contracts", b'{"text": "unterminated', "body", "malformed JSON"),
        ("/api/contracts", b'{"title": "no text"}', "text", "Field required"),
        ("/api/contracts", b'{"text": "x", "colour": 1}', "colour", "Extra inputs"),
        ("/api/review", b'{"categories": ["Parties"]}', "contract_id", "Field required"),
        ("/api/review", b'{"contract_id": "x", "categories": "Parties"}', "categories", "valid list"),
        ("/api/ask", b"[1, 2]", "body", "valid dictionary"),
        ("/api/feedback", b"{not json}", "body", "malformed JSON"),
        ("/api/feedback", b'{"contract_hash": "ab", "vote": "sideways", "category": "Parties"}', "vote",
         "'up' or 'down'"),
        ("/api/feedback", b'{"contract_hash": "ab", "vote": "up", "category": "Parties", '
         b'"spans": [{"text": "x", "start": 9, "end": 2}]}', "spans[0]", "before start"),
    ],
)
def test_malformed_json_gets_422_naming_the_field(client, path, body, field, message):
    reply = client.post(path, content=body, headers={"content-type": "application/json"})
    assert reply.status_code == 422, reply.text
    error = reply.json()["error"]
    assert error["field"] == field and message in error["message"]


def test_review_and_ask_refuse_unknown_ids_and_categories(client, short_contract):
    contract_id = client.post("/api/contracts", json={"text": short_contract.text}).json()["id"]
    unknown = client.post("/api/review", json={"contract_id": contract_id, "categories": ["Parties", "Vibes"]})
    assert unknown.status_code == 422 and unknown.json()["error"]["field"] == "categories[1]"
    assert client.post("/api/review", json={"contract_id": "nope"}).status_code == 404
    both = client.post("/api/ask", json={"contract_id": contract_id, "category": "Parties", "question": "Who?"})
    assert both.status_code == 422 and "exactly one" in both.json()["error"]["message"]
    assert client.get("/api/review/0123456789abcdef").status_code == 404


def test_fifty_concurrent_feedback_posts_lose_nothing(client, short_contract):
    contract_id = client.post("/api/contracts", json={"text": short_contract.text}).json()["id"]
    before = client.get("/api/feedback/stats").json()

    def post(n: int) -> httpx.Response:
        record = {"contract_hash": contract_id, "category": "Parties", "vote": "down" if n % 5 == 0 else "up",
                  "spans": [{"text": short_contract.text[0:20], "start": 0, "end": 20}],
                  "model_version": "smollm2-135m-instruct@test", "user": f"reviewer{n}", "comment": f"#{n}"}
        with httpx.Client(base_url=client.base_url, timeout=60) as own:  # a connection per client
            return own.post("/api/feedback", json=record)

    with ThreadPoolExecutor(50) as pool:
        replies = list(pool.map(post, range(50)))
    assert [r.status_code for r in replies] == [201] * 50
    ids = {r.json()["id"] for r in replies}
    assert len(ids) == 50
    assert all(r.json()["flags"] == ["unknown_model_version"] for r in replies)  # this server never answered so
    after = client.get("/api/feedback/stats").json()
    assert after["total"] - before["total"] == 50
    assert after["by_vote"]["down"] - before["by_vote"]["down"] == 10


def test_feedback_about_an_unknown_contract_is_kept_and_flagged(client):
    reply = client.post("/api/feedback", json={"contract_hash": "0000000000000000", "vote": "up",
                                                "question": "Who may terminate?", "model_version": ""})
    assert reply.status_code == 201
    assert set(reply.json()["flags"]) == {"unknown_contract", "unknown_model_version"}


def test_a_key_is_required_when_configured(tmp_path, short_contract):
    from clauseloop.serve import ServeConfig

    config = ServeConfig(db=str(tmp_path / "keyed.db"), student="base", api_key=KEY, openai_api=False)
    with RunningServer(config) as keyed:
        assert httpx.get(f"{keyed.url}/api/feedback/stats").status_code == 401
        wrong = httpx.get(f"{keyed.url}/api/feedback/stats", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and "Bearer" in wrong.json()["error"]["message"]
        assert httpx.post(f"{keyed.url}/api/contracts", json={"text": "x"}).status_code == 401
        good = httpx.get(f"{keyed.url}/api/feedback/stats", headers={"Authorization": f"Bearer {KEY}"})
        assert good.status_code == 200
        assert httpx.get(f"{keyed.url}/healthz").status_code == 200  # health and the page stay open
        assert httpx.get(f"{keyed.url}/").status_code == 200


def test_the_page_and_its_assets_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'id="contract"' in page.text
    script = client.get("/static/app.js").text
    assert "innerHTML" not in script and "createTextNode" in script  # contract text only ever as text nodes
    assert client.get("/static/style.css").status_code == 200
    models = client.get("/api/models").json()
    assert models["student"] == "base" and models["local"] and models["adapter_manifest"] is None
