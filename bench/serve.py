"""Benchmark: `clauseloop serve` under load — ask throughput, review latency, feedback writes, memory, a 1 MB contract.

    .venv/bin/python bench/serve.py                       # writes bench/results/serve.json and serve.md
    .venv/bin/python bench/serve.py --reviews 1 --ask-seconds 5 --out /tmp/serve.json   # a quick smoke run

The server runs as its own process (this script with ``--serve-port``: the app of ``clauseloop serve`` under
uvicorn, DSPy's response cache off so that every ask reaches the model), on a free port of 127.0.0.1 with a fresh
database; the clients are threads here, one HTTP connection each. Measured, in this order:

* the first ``/api/ask`` on the median-length contract (loads the weights and indexes the contract);
* ``/api/ask`` requests/s on that indexed contract: ``--ask-clients`` clients for ``--ask-seconds``, each asking
  the 41 categories in turn (the presence gate answers some without the model; their share is reported);
* review latency p50/p95: ``--reviews`` full 41-category reviews (``POST /api/review``, polled until done), each
  of a different contract nearest the median length, so no contract is indexed twice;
* feedback writes/s: ``--feedback-clients`` clients posting ``--feedback-per-client`` records each, all counted
  back from ``GET /api/feedback/stats`` (none may be lost);
* a contract of about ``--big-bytes`` (a CUAD contract repeated): its upload and one ask on it, timed;
* the server's resident memory: idle, after the model loaded, at the end, and its peak.
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from common import write_results

HERE = Path(__file__).parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "cuad" / "cuad-460.json.gz"
TIMEOUT = 3600.0  # one ask on a 1 MB contract takes minutes


def serve_forever(port: int, db: str, student: str) -> None:
    """The server process: `clauseloop serve`'s app, with DSPy's response cache off."""
    import dspy
    import uvicorn

    from clauseloop.cli.quiet import quiet_libraries
    from clauseloop.serve import ServeConfig, create_app

    quiet_libraries()
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    uvicorn.run(create_app(ServeConfig(port=port, db=db, student=student)), host="127.0.0.1", port=port,
                log_level="warning")


class ServerProcess:
    """``with ServerProcess(db, student) as server:`` — ``server.url``, ``server.memory()``; stopped on exit."""

    def __init__(self, db: Path, student: str, startup_seconds: float = 120.0):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        command = [sys.executable, __file__, "--serve-port", str(self.port), "--db", str(db), "--student", student]
        self.process = subprocess.Popen(command, env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
        deadline = time.monotonic() + startup_seconds
        while not self._healthy():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise SystemExit(f"the server did not start on port {self.port} (exit code {self.process.poll()})")
            time.sleep(0.2)

    def _healthy(self) -> bool:
        try:
            return httpx.get(f"{self.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def memory(self) -> dict[str, float]:
        """Resident and peak resident memory of the server process, in MiB (from /proc)."""
        fields = {}
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in ("VmRSS", "VmHWM"):
                fields[name] = round(int(value.split()[0]) / 1024, 1)
        return {"rss_mib": fields.get("VmRSS"), "peak_rss_mib": fields.get("VmHWM")}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def percentile(values: list[float], share: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))], 2)


def contracts_near_median(dataset, count: int) -> list:
    median = statistics.median(len(c.text) for c in dataset.contracts.values())
    return sorted(dataset.contracts.values(), key=lambda c: (abs(len(c.text) - median), c.id))[:count]


def upload(client: httpx.Client, text: str, title: str) -> dict:
    reply = client.post("/api/contracts", json={"text": text, "title": title})
    reply.raise_for_status()
    return reply.json()


def ask_once(client: httpx.Client, contract_id: str, category: str) -> dict:
    started = time.perf_counter()
    reply = client.post("/api/ask", json={"contract_id": contract_id, "category": category})
    reply.raise_for_status()
    return {**reply.json(), "seconds": time.perf_counter() - started}


def ask_throughput(url: str, contract_id: str, clients: int, seconds: float) -> dict:
    from clauseloop.data import CATEGORY_NAMES

    turns, results, lock = itertools.count(), [], threading.Lock()
    deadline = time.perf_counter() + seconds

    def client_loop(_: int) -> None:
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            while time.perf_counter() < deadline:
                answer = ask_once(client, contract_id, CATEGORY_NAMES[next(turns) % len(CATEGORY_NAMES)])
                with lock:
                    results.append(answer)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(client_loop, range(clients)))
    elapsed = time.perf_counter() - started
    latencies = [r["seconds"] for r in results]
    return {"clients": clients, "seconds": round(elapsed, 1), "requests": len(results),
            "requests_per_second": round(len(results) / elapsed, 3),
            "gated_share": round(sum(r["gated"] for r in results) / max(1, len(results)), 3),
            "latency_p50_s": percentile(latencies, 0.5), "latency_p95_s": percentile(latencies, 0.95)}


def review_latency(client: httpx.Client, contracts: list) -> dict:
    runs = []
    for contract in contracts:
        contract_id = upload(client, contract.text, contract.title)["id"]
        started = time.perf_counter()
        job = client.post("/api/review", json={"contract_id": contract_id})
        job.raise_for_status()
        while (state := client.get(f"/api/review/{job.json()['id']}").json())["status"] not in ("done", "failed"):
            time.sleep(0.5)
        if state["status"] != "done":
            raise SystemExit(f"review of {contract.id} failed: {state}")
        runs.append({"contract": contract.id, "chars": len(contract.text),
                     "seconds": round(time.perf_counter() - started, 1),
                     "gated": sum(bool(r.get("gated")) for r in state["results"].values())})
    seconds = [run["seconds"] for run in runs]
    return {"reviews": runs, "p50_s": percentile(seconds, 0.5), "p95_s": percentile(seconds, 0.95)}


def feedback_writes(url: str, contract, contract_id: str, clients: int, per_client: int) -> dict:
    span = {"text": contract.text[:20], "start": 0, "end": 20}
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        before = client.get("/api/feedback/stats").json()["total"]

    def client_loop(number: int) -> int:
        created = 0
        with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
            for index in range(per_client):
                record = {"contract_hash": contract_id, "category": "Parties", "vote": "up", "spans": [span],
                          "model_version": "bench", "user": f"client{number}", "comment": f"#{index}"}
                created += client.post("/api/feedback", json=record).status_code == 201
        return created

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        created = sum(pool.map(client_loop, range(clients)))
    elapsed = time.perf_counter() - started
    with httpx.Client(base_url=url, timeout=TIMEOUT) as client:
        stored = client.get("/api/feedback/stats").json()["total"] - before
    sent = clients * per_client
    return {"clients": clients, "sent": sent, "created": created, "stored": stored, "lost": sent - stored,
            "seconds": round(elapsed, 2), "writes_per_second": round(stored / elapsed, 1)}


def big_contract(client: httpx.Client, contract, size: int, category: str) -> dict:
    copies = -(-size // (len(contract.text) + 2))
    text = "\n\n".join([contract.text] * copies)
    started = time.perf_counter()
    added = client.post("/api/contracts", json={"text": text, "title": f"{contract.title} ×{copies}"})
    upload_seconds = time.perf_counter() - started
    result = {"bytes": len(text.encode()), "copies": copies, "upload_status": added.status_code,
              "upload_seconds": round(upload_seconds, 2), "category": category}
    if added.status_code == 201:
        answer = ask_once(client, added.json()["id"], category)
        result.update(ask_seconds=round(answer["seconds"], 1), gated=answer["gated"], spans=len(answer["spans"]))
    return result


def note(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def measure(args: argparse.Namespace) -> dict:
    from clauseloop.data import load_cuad

    dataset = load_cuad(str(args.data))
    median, *others = contracts_near_median(dataset, args.reviews + 1)
    db = Path(args.workdir) / "serve-bench.db"
    db.unlink(missing_ok=True)
    with ServerProcess(db, args.student) as server, httpx.Client(base_url=server.url, timeout=TIMEOUT) as client:
        memory = {"idle": server.memory()}
        note(f"server up at {server.url}; first ask (loads {args.student})")
        contract_id = upload(client, median.text, median.title)["id"]
        first = ask_once(client, contract_id, "Parties")
        memory["model_loaded"] = server.memory()
        result = {"student": args.student, "model_version": first["model_version"],
                  "median_contract": {"id": median.id, "chars": len(median.text)},
                  "first_ask_seconds": round(first["seconds"], 1)}
        note(f"asks: {args.ask_clients} clients for {args.ask_seconds} s")
        result["ask"] = ask_throughput(server.url, contract_id, args.ask_clients, args.ask_seconds)
        note(f"{args.reviews} full reviews")
        result["review"] = review_latency(client, others[: args.reviews])
        note(f"feedback: {args.feedback_clients} clients")
        result["feedback"] = feedback_writes(server.url, median, contract_id, args.feedback_clients,
                                             args.feedback_per_client)
        note(f"a {args.big_bytes:,}-byte contract: upload and one ask")
        result["big_contract"] = big_contract(client, median, args.big_bytes, args.big_category)
        memory["end"] = server.memory()
    return {**result, "memory": memory}


def markdown(result: dict) -> str:
    ask, review, feedback, big, memory = (result[k] for k in ("ask", "review", "feedback", "big_contract", "memory"))
    big_ask = (f"one ask ({big['category']}) {big['ask_seconds']} s{' (gated)' if big.get('gated') else ''}"
               if "ask_seconds" in big else "not asked")
    rows = [
        ("first ask (loads the model, indexes the contract)", f"{result['first_ask_seconds']} s"),
        (f"`/api/ask` on the indexed contract, {ask['clients']} clients, {ask['seconds']} s",
         f"{ask['requests_per_second']} requests/s ({ask['requests']} asks, {ask['gated_share']:.0%} gated; "
         f"latency p50 {ask['latency_p50_s']} s, p95 {ask['latency_p95_s']} s)"),
        (f"full review (41 categories), {len(review['reviews'])} contract(s) near the median length",
         f"p50 {review['p50_s']} s, p95 {review['p95_s']} s"),
        (f"feedback, {feedback['clients']} concurrent clients",
         f"{feedback['writes_per_second']} writes/s ({feedback['stored']} of {feedback['sent']} stored, "
         f"{feedback['lost']} lost)"),
        (f"a {big['bytes'] / 1e6:.2f} MB contract",
         f"upload {big['upload_status']} in {big['upload_seconds']} s; {big_ask}"),
        ("server memory (RSS)", f"idle {memory['idle']['rss_mib']} MiB, model loaded "
         f"{memory['model_loaded']['rss_mib']} MiB, end {memory['end']['rss_mib']} MiB, peak "
         f"{memory['end']['peak_rss_mib']} MiB"),
    ]
    lines = ["### Server (`bench/serve.py`)", "",
             f"`clauseloop serve` with student `{result['student']}` ({result['model_version']}) on "
             f"{result['machine']['cpus']} CPU cores, DSPy's response cache off; median contract "
             f"{result['median_contract']['chars']:,} characters.", "",
             "| measure | result |", "|---|---|", *[f"| {name} | {value} |" for name, value in rows]]
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--student", default="student", help="the answering LM (a role or model string)")
    parser.add_argument("--ask-clients", type=int, default=8)
    parser.add_argument("--ask-seconds", type=float, default=30.0)
    parser.add_argument("--reviews", type=int, default=3, help="full reviews timed (different contracts)")
    parser.add_argument("--feedback-clients", type=int, default=50)
    parser.add_argument("--feedback-per-client", type=int, default=20)
    parser.add_argument("--big-bytes", type=int, default=1_000_000, help="size of the large contract")
    parser.add_argument("--big-category", default="Governing Law")
    parser.add_argument("--workdir", default=str(HERE / "out" / "serve"), help="where the server's database goes")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "serve.json")
    parser.add_argument("--serve-port", type=int, default=None, help=argparse.SUPPRESS)  # the server process
    parser.add_argument("--db", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.serve_port is not None:
        serve_forever(args.serve_port, args.db, args.student)
        return
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no model price list download
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: pass --data PATH to a CUADv1.json(.gz)")
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    result = measure(args)
    result.update(data=str(args.data), machine={"cpus": os.cpu_count(), "platform": platform.platform()})
    write_results(args.out, result, markdown(result))


if __name__ == "__main__":
    main()
