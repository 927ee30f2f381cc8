"""Replay: general instructions answered by the base model itself, mixed into fine-tuning against forgetting.

A LoRA trained only on contract clauses drifts the student away from what it could do before (catastrophic
forgetting). Mixing in a share of general examples whose answers are the *base model's own* keeps its behaviour
on them anchored without any outside data: the rows teach nothing new, they penalise moving away from the base.
``SFTRunConfig.replay`` sets the share (0.2 = one general row per five domain rows); the prompts are
``replay_prompts.json`` (disjoint from the retention suite's, so retention measures what replay did not train).

Each base answer is generated once per (base weights, prompt file) and cached as JSON under the clauseloop cache
(``$CLAUSELOOP_CACHE/replay/``), and only for the prompts a run needs: later runs, incremental ones included,
reuse them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from clauseloop.data.atomic import write_json_atomic

logger = logging.getLogger(__name__)

PROMPTS_FILE = Path(__file__).with_name("replay_prompts.json")
ANSWER_TOKENS = 128  # long enough for a few sentences; the base model's answers are rarely longer


def replay_prompts() -> list[str]:
    return list(json.loads(PROMPTS_FILE.read_text())["prompts"])


def _cache_file(base_model: str) -> Path:
    from clauseloop.engine.model import weights_fingerprint
    from clauseloop.models import prepare
    from clauseloop.models.store import cache_root

    weights = weights_fingerprint(prepare(base_model).path)
    prompts = hashlib.sha256(PROMPTS_FILE.read_bytes()).hexdigest()[:16]
    return cache_root() / "replay" / f"{weights[:16]}-{prompts}-{ANSWER_TOKENS}.json"


def base_answers(base_model: str, prompts: list[str], *, threads: int = 16) -> dict[str, str]:
    """``prompts`` → the base model's greedy answers; generated once per prompt, then read from the cache."""
    cached_file = _cache_file(base_model)
    cached = json.loads(cached_file.read_text())["answers"] if cached_file.is_file() else {}
    missing = [prompt for prompt in dict.fromkeys(prompts) if prompt not in cached]
    if missing:
        from clauseloop.engine.lm import LocalLM

        logger.info("answering %d replay prompts with %s (cached in %s)", len(missing), base_model, cached_file)
        lm = LocalLM(base_model, temperature=0.0, max_tokens=ANSWER_TOKENS, cache=False)

        def answer(prompt: str) -> str:
            return lm(messages=[{"role": "user", "content": prompt}])[0].strip()

        # concurrent requests: the engine batches them (several times the tokens/s of one at a time)
        with ThreadPoolExecutor(max_workers=threads) as pool:
            cached.update(zip(missing, pool.map(answer, missing)))
        write_json_atomic(cached_file, {"base_model": base_model, "answers": cached})
    return {prompt: cached[prompt] for prompt in prompts}


def replay_rows(count: int, base_model: str, *, seed: int = 0) -> list[dict[str, Any]]:
    """``count`` prompt-completion rows of general prompts and the base model's answers (empty answers left out).

    Prompts are taken in a seeded order; more rows than prompts repeat them (each at most once more than any other).
    """
    if count <= 0:
        return []
    prompts = replay_prompts()
    random.Random(seed).shuffle(prompts)
    answers = base_answers(base_model, prompts[: min(count, len(prompts))])
    usable = [prompt for prompt in answers if answers[prompt]]
    if not usable:
        raise ValueError(f"{base_model} answered none of the replay prompts; check the model with `clauseloop ask`")
    chosen = [usable[index % len(usable)] for index in range(count)]
    return [
        {"prompt": [{"role": "user", "content": prompt}],
         "completion": [{"role": "assistant", "content": answers[prompt]}]}
        for prompt in chosen
    ]


def replay_count(domain_rows: int, share: float) -> int:
    """General rows to add to ``domain_rows``: ``share`` of them (0.2 → one per five), rounded."""
    if share < 0:
        raise ValueError(f"replay share must be >= 0, got {share}")
    return round(domain_rows * share)
