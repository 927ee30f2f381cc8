"""The main job on the embedded offline default (`clauseloop run`, `make run`).

Today it loads the contracts, prepares the local models, reports dataset statistics and asks the local student one
question about a contract. Later stages (review, evaluation, optimization, distillation) are added here.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass

from clauseloop.data import load_cuad
from clauseloop.data.stats import dataset_stats
from clauseloop.models import MINILM, SMOLLM2, generate_text, prepare

logger = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """Settings of the main job; every default is the offline one."""

    data: str | None = None  # None: the demo contracts shipped in the package
    student: str = SMOLLM2  # model-store name, local directory (+adapter) or hub id
    embedder: str = MINILM
    max_new_tokens: int = 40
    excerpt_chars: int = 500  # the student sees the opening of the contract: keep prompts short on CPU


def student_prompt(title: str, excerpt: str) -> str:
    return (
        f"Contract excerpt:\n{excerpt}\n\n"
        "Question: What is the name of this contract and who are the parties? Answer in one sentence."
    )


def run_main_job(config: RunConfig = RunConfig()) -> dict:
    """Run the job and return a JSON-able report (the CLI prints it)."""
    started = time.perf_counter()
    dataset = load_cuad(config.data)
    stats = dataset_stats(dataset)
    prepared = {name: asdict(prepare(name)) for name in (config.student, config.embedder)}
    contract = next(iter(dataset.contracts.values()))
    prompt = student_prompt(contract.title, contract.text[: config.excerpt_chars])
    answer = generate_text(config.student, prompt, max_new_tokens=config.max_new_tokens)
    return {
        "config": asdict(config),
        "stats": stats,
        "models": prepared,
        "example": {"contract": contract.title, "prompt": prompt, "answer": answer},
        "seconds": round(time.perf_counter() - started, 1),
    }
