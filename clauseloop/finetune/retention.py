"""The forgetting suite: does a fine-tuned student still behave like the general assistant it started from?

``measure_retention("smollm2-135m-instruct+runs/x/adapter")`` runs the general instructions of
``retention_prompts.json`` (nothing about contracts or law, none of the prompts replayed in training) through the
base and the tuned model. Checkable prompts (arithmetic, simple facts, following a format) are answered greedily
and scored by a rule: accuracy per kind, and the drop in points (base - tuned). Open prompts have no single right
answer, so both models are teacher-forced through the *base* model's greedy answer (same token ids, chat template
applied; the end of turn included if the base ended): mean per-token KL(base || tuned), full-vocabulary softmax in
float32. Base answers are cached (:func:`retention_cache_dir`), keyed by the base weights' fingerprint, the prompts
file's hash and the token budget, so later runs generate with the tuned model only.

Generation is transformers' ``generate`` in fixed, length-sorted batches, not the batching engine: on 32 of these
prompts (48 tokens, 1 thread, loaded 2-core machine) the engine took 20.3 / 24.3 s and ``generate`` 21.8 / 23.5 s,
same answers, and fixed batches make an answer depend only on the prompt set (the base against itself: no drop).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from itertools import zip_longest
from pathlib import Path
from typing import Any

from clauseloop.data.atomic import write_json_atomic
from clauseloop.engine.model import end_token_ids, weights_fingerprint
from clauseloop.models import SMOLLM2, cache_root, prepare, split_adapter
from clauseloop.models.load import load_causal_lm

logger = logging.getLogger(__name__)

PROMPTS_FILE = Path(__file__).with_name("retention_prompts.json")
CHECKED_KINDS = ("arithmetic", "fact", "format")
KINDS = (*CHECKED_KINDS, "open")
CHECK_TYPES = ("number", "contains", "exact", "regex")
_CACHE_FORMAT = 1  # bump when cached answers change meaning (prompt rendering, decoding)
Progress = Callable[[str, int, int], None]  # (phase, done, total)


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class RetentionConfig:
    """One retention measurement (the CLI reads its defaults and help from here)."""

    base_model: str = field(default=SMOLLM2, metadata=_help("The model before fine-tuning, to compare against."))
    prompts: str = field(default=str(PROMPTS_FILE), metadata=_help("Retention prompts file (JSON)."))
    limit: int | None = field(default=None, metadata=_help("Use this many prompts, half checkable, half open."))
    max_tokens: int = field(default=48, metadata=_help("Tokens generated per answer (greedy)."))
    batch_size: int = field(default=16, metadata=_help("Prompts per generation or teacher-forcing batch."))
    # One thread: on the shared 2-core machine, with a training job beside it, a batch of 16 answers took 118 s
    # with 2 threads and about 20 s with 1 (two threads contend with each other and with every other process).
    threads: int = field(default=1, metadata=_help("torch threads for the run."))
    seed: int = field(default=0, metadata=_help("Which prompts a --limit picks."))
    cache_dir: str | None = field(default=None, metadata=_help("Base answer cache (default: <cache>/retention)."))

    def __post_init__(self) -> None:
        minimums = {"max_tokens": 1, "batch_size": 1, "threads": 1, "limit": 2}  # limit: one of each half
        for name, minimum in minimums.items():
            if getattr(self, name) is not None and getattr(self, name) < minimum:
                raise ValueError(f"{name} must be >= {minimum}, got {getattr(self, name)}")


@dataclass(frozen=True)
class RetentionPrompt:
    id: str
    kind: str
    prompt: str
    check: dict[str, Any] | None = None  # None for open prompts


def load_prompts(path: str | Path = PROMPTS_FILE) -> list[RetentionPrompt]:
    """The prompts of a retention file, validated; a malformed entry is refused with its id and the fix."""
    path = Path(path).expanduser()
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["prompts"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{path}: not a retention prompts file ({error}); expected {{\"prompts\": [...]}}") from error
    prompts, seen = [], set()
    for entry in entries:
        prompt = RetentionPrompt(*(entry.get(key, "") for key in ("id", "kind", "prompt")), entry.get("check"))
        problem = _prompt_problem(prompt, seen)
        if problem:
            raise ValueError(f"{path}: prompt {prompt.id or entry!r}: {problem}")
        seen.add(prompt.id)
        prompts.append(prompt)
    return prompts


def _prompt_problem(prompt: RetentionPrompt, seen_ids: set[str]) -> str | None:
    if not prompt.id or prompt.id in seen_ids:
        return "every prompt needs a unique non-empty id"
    if prompt.kind not in KINDS or not prompt.prompt.strip():
        return f"needs a non-empty prompt and a kind among {KINDS}"
    if (prompt.kind == "open") != (prompt.check is None):
        return "open prompts take no check; every other kind needs one"
    if prompt.check is None:
        return None
    if prompt.check.get("type") not in CHECK_TYPES or "value" not in prompt.check:
        return f"a check needs a type among {CHECK_TYPES} and a value"
    try:
        passes(prompt.check, "0")  # a regex that does not compile, a number that is not one
    except (re.error, TypeError, ValueError) as error:
        return f"its check's value does not work ({error})"
    return None


def select_prompts(prompts: list[RetentionPrompt], limit: int | None, seed: int = 0) -> list[RetentionPrompt]:
    """All prompts, or ``limit`` of them: checkable and open alternate, checkable kinds take turns (seeded order)."""
    if limit is None or limit >= len(prompts):
        return list(prompts)
    rng = random.Random(seed)
    by_kind = {kind: rng.sample(group := [p for p in prompts if p.kind == kind], len(group)) for kind in KINDS}
    checkable = [p for turn in zip_longest(*(by_kind[k] for k in CHECKED_KINDS)) for p in turn if p]
    return [p for pair in zip_longest(checkable, by_kind["open"]) for p in pair if p][:limit]


_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
          "seventeen eighteen nineteen")
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety"
_NUMBER_WORDS = {**{w: n for n, w in enumerate(_UNITS.split())}, **{w: 10 * n for n, w in enumerate(_TENS.split(), 2)}}
_SCALES = {"hundred": 100, "thousand": 1000}


def normalize(text: str) -> str:
    """Lower case, punctuation and symbols as spaces, single spaces ("H₂O!" -> "h2o")."""
    return " ".join(re.sub(r"[\W_]+", " ", unicodedata.normalize("NFKC", text).lower()).split())


def numbers_in(text: str) -> list[float]:
    """Numbers in digits ("2,000", "3.5") or words ("twenty-four", "one hundred"), in order."""
    text = re.sub(r"(?<=\d),(?=\d{3}\b)", "", unicodedata.normalize("NFKC", text).lower())
    values: list[float] = []
    in_words = False  # the previous token was a number word, so "twenty four" / "one hundred" extend it
    for token in re.findall(r"\d+(?:\.\d+)?|[a-z]+", text):
        word = _NUMBER_WORDS.get(token)
        if token[0].isdigit():
            values.append(float(token))
        elif word is not None and in_words and values[-1] >= 20 and values[-1] % 10 == 0 and word < 10:
            values[-1] += word
        elif token in _SCALES and in_words:
            values[-1] *= _SCALES[token]
        elif word is not None or token in _SCALES:
            values.append(float(_SCALES.get(token, word or 0)))
        in_words = word is not None or token in _SCALES
    return values


def passes(check: dict[str, Any], answer: str) -> bool:
    """Whether ``answer`` meets a prompt's check (see the prompts file's description for each type)."""
    kind, value = check["type"], check["value"]
    options = value if isinstance(value, list) else [value]
    if kind == "number":
        # first or last number: "12", "The answer is 12.", "7 + 5 = 12" pass; a list that merely contains 12 does not
        found = numbers_in(answer)
        return bool(found) and any(abs(n - float(value)) < 1e-9 for n in (found[0], found[-1]))
    if kind == "contains":
        padded = f" {normalize(answer)} "
        return any(f" {normalize(option)} " in padded for option in options)
    if kind == "exact":
        return normalize(answer) in {normalize(option) for option in options}
    if kind == "regex":
        flags = 0 if check.get("case_sensitive") else re.IGNORECASE
        return re.search(value, answer.strip(), flags) is not None
    raise ValueError(f"unknown check type {kind!r}; use one of {CHECK_TYPES}")


@dataclass(frozen=True)
class KindScore:
    kind: str  # a checkable kind, or "all"
    n: int
    base_correct: int
    tuned_correct: int

    @property
    def drop_points(self) -> float:
        return round(100 * (self.base_correct - self.tuned_correct) / self.n, 2) if self.n else 0.0

    def to_dict(self) -> dict[str, Any]:
        accuracy = {f"{who}_accuracy": round(getattr(self, f"{who}_correct") / self.n, 4) if self.n else 0.0
                    for who in ("base", "tuned")}
        return {**asdict(self), **accuracy, "drop_points": self.drop_points}


@dataclass(frozen=True)
class RetentionReport:
    """Accuracy on the checkable prompts (per kind, then "all") and KL(base || tuned) on the open ones."""

    model: str
    base_model: str
    scores: tuple[KindScore, ...]
    kl_per_token: float  # mean over all answer tokens of the open prompts
    kl_max_prompt: float  # the open prompt the tuned model departs from most (its mean per-token KL)
    kl_prompts: int
    kl_tokens: int
    regressions: tuple[str, ...]  # ids of checkable prompts the base passes and the tuned model fails
    base_answers_cached: bool
    prompts_sha256: str
    config: dict[str, Any]
    seconds: float

    @property
    def accuracy_drop(self) -> float:
        """Base minus tuned accuracy on all checkable prompts (``scores[-1]``), in points."""
        return self.scores[-1].drop_points

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "scores": [score.to_dict() for score in self.scores],
                "accuracy_drop": self.accuracy_drop}


def retention_cache_dir() -> Path:
    """``<clauseloop cache>/retention``, beside the model store (``$CLAUSELOOP_CACHE`` moves both)."""
    return cache_root() / "retention"


@dataclass(frozen=True)
class _Answer:
    token_ids: tuple[int, ...]  # without the end-of-turn token
    end_token: int | None  # the token that ended the turn; None when the answer ran out of tokens
    text: str


@contextmanager
def _torch_threads(threads: int) -> Iterator[None]:
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _load(spec: str, base_tokenizer=None):
    """(model, tokenizer) with any adapter merged, so generation runs at the base model's speed; with
    ``base_tokenizer``, refused unless it tokenizes the same way (per-token KL needs the same tokens)."""
    model, tokenizer = load_causal_lm(spec)
    if base_tokenizer is not None and tokenizer.get_vocab() != base_tokenizer.get_vocab():
        raise ValueError(f"{spec} has another tokenizer than the base; pass as --base the model it was tuned from")
    return (model.merge_and_unload() if split_adapter(spec)[1] else model), tokenizer


def _generate(model, tokenizer, prompt_ids: list[list[int]], config: RetentionConfig, report: Progress, phase: str):
    """Greedy answers, in fixed batches of similar-length prompts (left-padded: answers start in one column)."""
    import torch

    end_ids, pad = end_token_ids(model, tokenizer), tokenizer.pad_token_id
    order = sorted(range(len(prompt_ids)), key=lambda i: len(prompt_ids[i]))
    answers: list[_Answer | None] = [None] * len(prompt_ids)
    for start in range(0, len(order), config.batch_size):
        rows = order[start : start + config.batch_size]
        width = max(len(prompt_ids[i]) for i in rows)
        inputs = torch.tensor([[pad] * (width - len(prompt_ids[i])) + prompt_ids[i] for i in rows])
        mask = torch.tensor([[0] * (width - len(prompt_ids[i])) + [1] * len(prompt_ids[i]) for i in rows])
        with torch.no_grad():
            output = model.generate(input_ids=inputs, attention_mask=mask, max_new_tokens=config.max_tokens,
                                    do_sample=False, pad_token_id=pad, eos_token_id=sorted(end_ids))
        for row, sequence in zip(rows, output[:, width:].tolist()):
            end = next((k for k, token in enumerate(sequence) if token in end_ids), None)
            kept = sequence if end is None else sequence[:end]
            answers[row] = _Answer(tuple(kept), None if end is None else sequence[end],
                                   tokenizer.decode(kept, skip_special_tokens=True))
        report(phase, min(start + config.batch_size, len(order)), len(order))
    return answers


def _answer_log_probs(model, sequences: list[list[int]], answer_starts: list[int]):
    """Full-vocabulary log-probabilities (float32) at every position that predicts an answer token, all rows
    concatenated. Right padding: a row's real tokens come first, so their positions and attention are unchanged."""
    import torch

    width = max(map(len, sequences))
    inputs = torch.tensor([s + [0] * (width - len(s)) for s in sequences])
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
    # the logits at position c predict token c + 1: from the last prompt token to the one before the end
    positions = [(r, c) for r, s in enumerate(sequences) for c in range(answer_starts[r] - 1, len(s) - 1)]
    rows, columns = torch.tensor(positions).T
    with torch.no_grad():
        # the vocabulary projection only where it is needed: all positions x 49k logits would take gigabytes
        hidden = model.get_decoder()(input_ids=inputs, attention_mask=mask).last_hidden_state
        logits = model.get_output_embeddings()(hidden[rows, columns]).float()
    return torch.log_softmax(logits, dim=-1)


def _kl_per_prompt(base, tuned, sequences, answer_starts, batch_size: int, report: Progress) -> list[tuple[float, int]]:
    """(sum of per-token KL(base || tuned), answer tokens) per sequence; both models see identical batches."""
    import torch

    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    totals: list[tuple[float, int]] = [(0.0, 0)] * len(sequences)
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        batch, starts = [sequences[i] for i in rows], [answer_starts[i] for i in rows]
        base_log_probs = _answer_log_probs(base, batch, starts)
        tuned_log_probs = _answer_log_probs(tuned, batch, starts)
        token_kl = (base_log_probs.exp() * (base_log_probs - tuned_log_probs)).sum(dim=-1)
        counts = [len(s) - begin for s, begin in zip(batch, starts)]
        for row, part in zip(rows, torch.split(token_kl, counts)):
            totals[row] = (float(part.sum()), len(part))
        report("KL, open", min(start + batch_size, len(order)), len(order))
    return totals


def _cache_path(config: RetentionConfig, prompts_sha256: str) -> Path:
    base, adapter = split_adapter(config.base_model)
    fingerprint = weights_fingerprint(prepare(base).path, adapter)
    directory = Path(config.cache_dir).expanduser() if config.cache_dir else retention_cache_dir()
    return directory / f"{fingerprint}-{prompts_sha256[:16]}-{config.max_tokens}tok-v{_CACHE_FORMAT}.json"


def _read_cache(path: Path) -> dict[str, _Answer]:
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))["answers"]
        return {key: _Answer(tuple(e["token_ids"]), e["end_token"], e["text"]) for key, e in entries.items()}
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        logger.warning("ignoring the unreadable retention cache %s (%s); base answers are regenerated", path, error)
        return {}


def _base_answers(model, tokenizer, groups, prompt_ids, config, cache: Path, report: Progress):
    """({prompt id: base answer}, whether all came from the cache). Checkable and open prompts are generated in
    separate batches, as the tuned model generates the checkable ones alone: same batches, same arithmetic."""
    answers = _read_cache(cache)
    missing = {name: [p for p in group if p.id not in answers] for name, group in groups.items()}
    for name, group in missing.items():
        if not group:
            continue
        logger.info("generating the base model's answers to %d %s prompts (cached in %s)", len(group), name, cache)
        generated = _generate(model, tokenizer, [prompt_ids[p.id] for p in group], config, report, f"base, {name}")
        answers.update({p.id: answer for p, answer in zip(group, generated)})
        # re-read before writing: a concurrent run may have cached other prompts meanwhile
        write_json_atomic(cache, {"answers": {key: asdict(a) for key, a in {**_read_cache(cache), **answers}.items()}},
                          indent=None)
    return answers, not any(missing.values())


def measure_retention(model: str, config: RetentionConfig | None = None, *,
                      progress: Progress | None = None) -> RetentionReport:
    """Retention of ``model`` (a LocalLM model string: ``"BASE+ADAPTER_DIR"``, a model directory or store name)
    against ``config.base_model``. ``progress(phase, done, total)`` is called after every batch."""
    config, started, adapter = config or RetentionConfig(), time.perf_counter(), split_adapter(model)[1]
    if adapter and not Path(adapter).expanduser().is_dir():  # refused before anything loads (PEFT would try the hub)
        raise FileNotFoundError(f"adapter directory {adapter!r} does not exist; pass MODEL as BASE+ADAPTER_DIR, "
                                f"e.g. {SMOLLM2}+runs/x/adapter")
    report = progress or (lambda phase, done, total: None)
    prompts_sha256 = hashlib.sha256(Path(config.prompts).expanduser().read_bytes()).hexdigest()
    prompts = select_prompts(load_prompts(config.prompts), config.limit, config.seed)
    checkable = [p for p in prompts if p.check is not None]
    open_prompts = [p for p in prompts if p.check is None]
    with _torch_threads(config.threads):
        base, tokenizer = _load(config.base_model)
        ids = {p.id: list(tokenizer.apply_chat_template([{"role": "user", "content": p.prompt}],
                                                        add_generation_prompt=True, return_dict=True)["input_ids"])
               for p in prompts}
        cache = _cache_path(config, prompts_sha256)
        base_answers, cached = _base_answers(base, tokenizer, {"checkable": checkable, "open": open_prompts},
                                             ids, config, cache, report)
        tuned, _ = _load(model, base_tokenizer=tokenizer)
        tuned_answers = _generate(tuned, tokenizer, [ids[p.id] for p in checkable], config, report, "tuned, checkable")
        answers = [base_answers[p.id] for p in open_prompts]
        sequences = [ids[p.id] + list(a.token_ids) + ([a.end_token] if a.end_token is not None else [])
                     for p, a in zip(open_prompts, answers)]
        kl = _kl_per_prompt(base, tuned, sequences, [len(ids[p.id]) for p in open_prompts], config.batch_size, report)
    return _report(model, config, checkable, [base_answers[p.id].text for p in checkable],
                   [a.text for a in tuned_answers], kl, cached, prompts_sha256, time.perf_counter() - started)


def _report(spec, config, checkable, base_texts, tuned_texts, kl, cached, prompts_sha256, seconds) -> RetentionReport:
    base_pass = [passes(p.check, text) for p, text in zip(checkable, base_texts)]
    tuned_pass = [passes(p.check, text) for p, text in zip(checkable, tuned_texts)]
    scores = []
    for kind in (*CHECKED_KINDS, "all"):
        rows = [i for i, p in enumerate(checkable) if kind in ("all", p.kind)]
        if rows or kind == "all":
            scores.append(KindScore(kind, len(rows), sum(base_pass[i] for i in rows),
                                    sum(tuned_pass[i] for i in rows)))
    kl_tokens = sum(count for _, count in kl)
    return RetentionReport(
        model=spec, base_model=config.base_model, scores=tuple(scores),
        kl_per_token=sum(total for total, _ in kl) / kl_tokens if kl_tokens else 0.0,
        kl_max_prompt=max((total / count for total, count in kl), default=0.0),
        kl_prompts=len(kl), kl_tokens=kl_tokens,
        regressions=tuple(p.id for p, b, t in zip(checkable, base_pass, tuned_pass) if b and not t),
        base_answers_cached=cached, prompts_sha256=prompts_sha256, config=asdict(config), seconds=round(seconds, 1),
    )
