"""RLAIF preference pairs: the student's own sampled answers, ranked by grounding, gold and a position-checked judge.

For each chosen train question (answerable first, as for teacher traces; ``questions_per_contract``) the prompt is
exactly what ``ContractQA`` sends the student (the category text and the passages its retriever picks, in the
chat format of the SFT rows), and the student samples ``candidates`` answers at ``temperature`` > 0, each with
its own seed (reproducible; concurrent, so the local engine batches them). Identical answers count once.

Each candidate is scored by

* ``grounded``: the share of its quotes found verbatim (whitespace aside) in the contract — invented text is
  the student's worst failure, and an answer of NONE is trivially grounded;
* ``gold_f1``: CUAD's per-question F1 of its located quotes against the gold clauses;

and ``score`` is their mean. The best- and worst-scored candidates go to the judge as a pair, *twice*: once as
(A, B) and once as (B, A). Small judges prefer a position; a verdict counts only when both orders name the same
answer. The judge sees the passages the student saw, never the gold, so its agreement with the gold-based scores
is a real measurement (``judge_gold_agreement`` in the report) and the same judge can rank questions without gold.
A pair is kept when the judge is consistent and, where the scores differ, agrees with them; chosen is the answer it
preferred. Every other outcome is dropped and counted by reason.

Answers in a pair are re-rendered from their parsed quotes in the SFT rows' format, so DPO compares contents, not
formatting accidents of sampling. The file is append-only per contract with :class:`SFTDataset`'s machinery (a
killed or failed run continues where it stopped); ``FILE.report.json`` holds pairs per source, drop counts and
the judge's agreement with gold. An unreachable student or judge stops the run with
:class:`~clauseloop.engine.reachability.RoleUnavailable` naming the role and URL; pairs written so far stay.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dspy
from dspy.utils.exceptions import AdapterParseError

from clauseloop.data.atomic import write_json_atomic
from clauseloop.finetune.dataset import SFTDataset, build_per_contract
from clauseloop.finetune.rows import _adapter_messages, program_inputs, row_id
from clauseloop.finetune.traces import pick_questions
from clauseloop.program.grounding import ground, parse_quotes
from clauseloop.program.judge import sections
from clauseloop.program.metrics import score_question, uses_containment

logger = logging.getLogger(__name__)

SOURCE = "rlaif"
STOP = ["[[ ## completed"]  # the chat adapter's end marker: small LMs otherwise repeat themselves
PASSAGE_CHARS = 3000  # what the judge reads of the passages; two passages are ~1,500 characters


@dataclass(frozen=True)
class PairsConfig:
    """What `clauseloop finetune pairs` samples, scores and keeps (the CLI reads defaults and help from here)."""

    out: str = field(default="runs/dpo/pairs.jsonl", metadata={"help": "The pairs file (JSON lines)."})
    data: str | None = field(default=None, metadata={"help": "CUAD file; None: the demo contracts."})
    limit_contracts: int | None = field(default=None, metadata={"help": "Only the first N train contracts (by id)."})
    student: str = field(default="student", metadata={"help": "The LM whose answers are paired: a role or a model "
                                                                "string (the SFT adapter: BASE+RUN/adapter)."})
    judge: str = field(default="judge", metadata={"help": "The judge LM: a role or a model/LiteLLM string."})
    candidates: int = field(default=4, metadata={"help": "Answers sampled per question."})
    temperature: float = field(default=0.8, metadata={"help": "Sampling temperature of the candidates (> 0)."})
    # longer than the program's 32-token budget: a pair's answers are trained as written, and a quote cut by the
    # budget would teach the student to stop mid-sentence
    answer_tokens: int = field(default=96, metadata={"help": "Most tokens per sampled answer."})
    questions_per_contract: int | None = field(
        default=4, metadata={"help": "Questions per contract (answerable first); None: all 41."})
    categories: tuple[str, ...] | None = field(default=None, metadata={"help": "Only these categories; None: all."})
    threads: int = field(default=16, metadata={"help": "Concurrent LM requests (the local engine batches them)."})
    seed: int = field(default=0, metadata={"help": "Seed of the candidates' sampling."})

    def __post_init__(self) -> None:
        if self.candidates < 2:
            raise ValueError(f"candidates must be >= 2 to make a pair, got {self.candidates}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (greedy decoding gives one answer), got {self.temperature}")
        if self.threads < 1 or self.answer_tokens < 1:
            raise ValueError("threads and answer_tokens must be >= 1")


@dataclass(frozen=True)
class Candidate:
    """One sampled answer: its quotes as written, and how they score."""

    quotes: tuple[str, ...]
    grounded: float
    gold_f1: float | None

    @property
    def score(self) -> float:
        known = [value for value in (self.grounded, self.gold_f1) if value is not None]
        return sum(known) / len(known)

    def to_dict(self) -> dict[str, Any]:
        return {"grounded": round(self.grounded, 4), "gold_f1": None if self.gold_f1 is None else
                round(self.gold_f1, 4), "score": round(self.score, 4)}


def answer_text(output: Any) -> str:
    """The ``clauses`` field of a raw chat-adapter reply (the whole reply when it has no sections)."""
    text = output.get("text", "") if isinstance(output, dict) else str(output)
    return sections(text).get("clauses", text).strip()


def score_candidate(answer: str, contract_text: str, windows, gold: Sequence[str] | None, category: str) -> Candidate:
    quotes = parse_quotes(answer)
    located, dropped = ground(answer, contract_text, windows)
    grounded = 1.0 if not quotes else (len(quotes) - dropped) / len(quotes)
    gold_f1 = None
    if gold is not None:
        gold_f1 = score_question(gold, [span.text for span in located], uses_containment(category)).f1
    return Candidate(tuple(quotes), grounded, gold_f1)


class CompareClauseAnswers(dspy.Signature):
    """Two answers to a contract-review question quote the contract passages about a clause category. Decide which
    answer is better: quotes copied word for word from the passages beat invented or paraphrased text; quotes
    about the category beat unrelated ones; answering NONE is right only when no passage is about the category.
    Answer A or B (or tie when they are equally good)."""

    category: str = dspy.InputField(desc="the clause category asked about")
    passages: str = dspy.InputField(desc="the contract passages both answers were given")
    answer_a: str = dspy.InputField()
    answer_b: str = dspy.InputField()
    rationale: str = dspy.OutputField(desc="one or two sentences")
    better: str = dspy.OutputField(desc="A, B or tie")


def parse_choice(text: str | None) -> str | None:
    """"A", "B" or "tie" read from the judge's ``better`` field, else None."""
    words = (text or "").strip().lower().replace("*", "").replace('"', "").split()
    if not words:
        return None
    first = words[0].strip(".,:;()")
    if first == "answer" and len(words) > 1:
        first = words[1].strip(".,:;()")
    if first in ("a", "b"):
        return first.upper()
    return "tie" if first in ("tie", "equal", "both", "neither") else None


def ask_judge(judge_lm: Any, category: str, passages: str, answer_a: str, answer_b: str) -> tuple[str | None, str]:
    """(choice, rationale) of one judge call; a reply that broke the format is read from its raw text."""
    predict = dspy.Predict(CompareClauseAnswers)
    adapter = dspy.ChatAdapter(use_json_adapter_fallback=False)
    try:
        with dspy.context(lm=judge_lm, adapter=adapter):
            out = predict(category=category, passages=passages[:PASSAGE_CHARS], answer_a=answer_a, answer_b=answer_b)
        return parse_choice(out.better), out.rationale
    except AdapterParseError as error:
        raw = str(error.lm_response or "")
        return parse_choice(sections(raw).get("better")), raw[:500]


def verdict_of(first_order: str | None, second_order: str | None) -> str:
    """Combine the judge's choices for (x, y) shown as (A, B) and then as (B, A): "x", "y", "tie", "inconsistent"
    (each order names a different answer, or a tie in only one order) or "unreadable"."""
    if first_order is None or second_order is None:
        return "unreadable"
    preferred = {("A", "B"): "x", ("B", "A"): "y", ("tie", "tie"): "tie"}
    return preferred.get((first_order, second_order), "inconsistent")


def decide(best: Candidate, worst: Candidate, verdict: str) -> tuple[str | None, bool | None]:
    """(which of best "x" / worst "y" is chosen, or None with the drop reason in the counts; whether the judge agreed
    with the gold F1, None where gold gives no direction). ``verdict`` is :func:`verdict_of`'s."""
    gold_says = None
    if best.gold_f1 is not None and worst.gold_f1 is not None and best.gold_f1 != worst.gold_f1:
        gold_says = "x" if best.gold_f1 > worst.gold_f1 else "y"
    agreed = None if gold_says is None or verdict not in ("x", "y") else verdict == gold_says
    if verdict not in ("x", "y"):
        return None, agreed
    if best.score != worst.score and verdict != "x":
        return None, agreed  # the judge contradicts the grounding and gold scores
    return verdict, agreed


DROP_REASONS = {"tie": "judge_tie", "inconsistent": "judge_inconsistent", "unreadable": "judge_unreadable"}


@dataclass
class Question:
    """One question's prompt and what its candidates are scored against."""

    contract: Any
    question: Any
    task: str
    passages: str
    windows: list
    prompt: list[dict[str, str]]
    answers: list[str] = field(default_factory=list)


def candidate_seed(question_id: str, index: int, seed: int) -> int:
    """A per-candidate seed that does not depend on which questions ran before (resumable, reproducible)."""
    return int(hashlib.sha256(f"{seed}:{question_id}:{index}".encode()).hexdigest()[:8], 16)


def sample_answers(student_lm: Any, questions: Sequence[Question], config: PairsConfig) -> None:
    """Fill each question's ``answers`` with ``config.candidates`` sampled answers (concurrently)."""
    from clauseloop.engine.reachability import role_errors

    jobs = [(item, index) for item in questions for index in range(config.candidates)]

    def sample(job: tuple[Question, int]) -> str:
        item, index = job
        outputs = student_lm(messages=item.prompt, temperature=config.temperature, max_tokens=config.answer_tokens,
                             stop=STOP, seed=candidate_seed(item.question.id, index, config.seed))
        return answer_text(outputs[0])

    with role_errors({"student": student_lm}), ThreadPoolExecutor(max_workers=config.threads) as pool:
        for (item, _), answer in zip(jobs, pool.map(sample, jobs)):
            item.answers.append(answer)


def judge_pairs(judge_lm: Any, comparisons: Sequence[tuple[Question, str, str]], threads: int) -> list:
    """For each (question, x, y): the judge's (choice, rationale) with x shown first, then with y shown first."""
    from clauseloop.engine.reachability import role_errors

    jobs = [(item, a, b) for item, x, y in comparisons for a, b in ((x, y), (y, x))]

    def judge(job: tuple[Question, str, str]):
        item, a, b = job
        return ask_judge(judge_lm, item.question.category, item.passages, a or "NONE", b or "NONE")

    with role_errors({"judge": judge_lm}), ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(judge, jobs))
    return [(results[i], results[i + 1]) for i in range(0, len(results), 2)]


def ranked_candidates(item: Question, counts: Counter) -> list[tuple[Candidate, str]]:
    """Distinct non-empty candidates with their answer text, best score first (sampling order breaks ties)."""
    gold = [span.text for span in item.question.answers]
    distinct: dict[tuple[str, ...], tuple[Candidate, str]] = {}
    for answer in item.answers:
        if not answer:
            counts["empty_answers"] += 1
            continue
        candidate = score_candidate(answer, item.contract.text, item.windows, gold, item.question.category)
        if candidate.quotes in distinct:
            counts["duplicate_answers"] += 1
            continue
        distinct[candidate.quotes] = (candidate, answer)
    return sorted(distinct.values(), key=lambda pair: -pair[0].score)


def pair_row(item: Question, chosen: Candidate, rejected: Candidate, judged: dict[str, Any]) -> dict[str, Any]:
    render = lambda c: [_adapter_messages(item.task, item.passages, list(c.quotes))[2]]
    chosen_message, rejected_message = render(chosen), render(rejected)
    return {
        "prompt": item.prompt, "chosen": chosen_message, "rejected": rejected_message, "source": SOURCE,
        "contract_id": item.contract.id, "category": item.question.category, "question_id": item.question.id,
        "id": row_id(item.prompt, chosen_message + rejected_message),
        "scores": {"chosen": chosen.to_dict(), "rejected": rejected.to_dict()}, "judge": judged,
    }


def question_prompts(program: Any, contract: Any, questions: Sequence[Any], config: PairsConfig,
                     counts: Counter) -> list[Question]:
    """The chosen questions of a contract with the prompts the program would send (gated ones left out: the
    program answers those without the LM, so there is nothing to prefer)."""
    if config.categories:
        questions = [q for q in questions if q.category in config.categories]
    chosen = pick_questions(questions, config.questions_per_contract)
    counts["questions"] += len(chosen)
    items = []
    for question in chosen:
        if program.config.gate and not program._gate().allows(contract, question.category):
            counts["gated"] += 1
            continue
        task, passages, windows = program_inputs(program, contract, question.category, None)
        prompt = _adapter_messages(task, passages, [])[:2]  # system and user: the answer is the student's
        items.append(Question(contract, question, task, passages, windows, prompt))
    return items


def shown(candidate: Candidate) -> str:
    return "\n".join(candidate.quotes) or "NONE"


def judged_row(item: Question, best: Candidate, worst: Candidate, orders, counts: Counter) -> dict | None:
    """The pair of ``best`` and ``worst`` as the judge ranked them in both orders, or None (and a count why)."""
    (first, why_first), (second, why_second) = orders
    verdict = verdict_of(first, second)
    chosen, agreed = decide(best, worst, verdict)
    if agreed is not None:
        counts["judge_agrees_with_gold" if agreed else "judge_disagrees_with_gold"] += 1
    if chosen is None:
        counts[DROP_REASONS.get(verdict, "judge_contradicts_scores")] += 1
        return None
    counts["kept"] += 1
    winner, loser = (best, worst) if chosen == "x" else (worst, best)
    judged = {"best_first": first, "best_second": second, "rationales": [why_first, why_second],
              "chosen_was_best_scored": chosen == "x"}
    return pair_row(item, winner, loser, judged)


def contract_pair_rows(program: Any, contract: Any, questions: Sequence[Any], student_lm: Any, judge_lm: Any,
                       config: PairsConfig) -> tuple[list[dict], dict[str, int]]:
    """The kept pairs of one contract and the counts of everything sampled, judged and dropped."""
    counts: Counter = Counter()
    items = question_prompts(program, contract, questions, config, counts)
    sample_answers(student_lm, items, config)
    compared, comparisons = [], []
    for item in items:
        ranked = ranked_candidates(item, counts)
        if len(ranked) < 2:
            counts["no_distinct_answers"] += 1
            continue
        best, worst = ranked[0][0], ranked[-1][0]
        compared.append((item, best, worst))
        comparisons.append((item, shown(best), shown(worst)))
    rows = []
    for (item, best, worst), orders in zip(compared, judge_pairs(judge_lm, comparisons, config.threads)):
        if (row := judged_row(item, best, worst, orders, counts)) is not None:
            rows.append(row)
    return rows, dict(counts)


def pairs_report(pairs: SFTDataset) -> dict[str, Any]:
    """Pairs per source and category, every drop count, the judge's agreement with gold and pairs per hour."""
    rows = pairs.rows()
    counts = pairs.state["counts"]
    own = counts.get(SOURCE, {})
    agree, disagree = own.get("judge_agrees_with_gold", 0), own.get("judge_disagrees_with_gold", 0)
    seconds = sum(source.get("seconds", 0) for source in counts.values())
    return {
        "file": str(pairs.path),
        "pairs": len(rows),
        "pairs_per_source": dict(sorted(Counter(row["source"] for row in rows).items())),
        "pairs_per_category": dict(sorted(Counter(row.get("category") for row in rows).items())),
        "contracts": len({row["contract_id"] for row in rows}),
        "counts": counts,
        "judge_gold_agreement": {"agree": agree, "disagree": disagree,
                                 "rate": round(agree / (agree + disagree), 4) if agree + disagree else None},
        "pairs_per_hour": round(len(rows) * 3600 / seconds, 1) if seconds else None,
        "units_done": {source: len(units) for source, units in pairs.state["done"].items()},
    }


def build_pairs(config: PairsConfig, on_contract: Callable[[str, int], None] | None = None, *,
                student_lm: Any = None, judge_lm: Any = None) -> dict[str, Any]:
    """Build (or continue) the pairs file over the train contracts; returns the report, also written beside it.

    ``student_lm``/``judge_lm`` override ``config.student``/``config.judge`` (any DSPy LM);
    ``on_contract(contract_id, contracts in all)`` is called after each contract.
    """
    import time

    from clauseloop.data import load_cuad
    from clauseloop.engine.roles import make_lm
    from clauseloop.finetune.build import training_contracts
    from clauseloop.program.evaluation import build_program

    dataset = load_cuad(config.data)
    train, forbidden = training_contracts(dataset, config.limit_contracts)
    pairs = SFTDataset(config.out, forbidden_contracts=forbidden)
    program = build_program("zero-shot", train)
    student_lm = student_lm or make_lm(config.student)
    judge_lm = judge_lm or make_lm(config.judge)
    tick = (lambda contract_id: on_contract(contract_id, len(train.contracts))) if on_contract else None
    started = time.perf_counter()
    try:
        build_per_contract(pairs, SOURCE, train.contracts, lambda cid: contract_pair_rows(
            program, train.contracts[cid], train.questions_for(cid), student_lm, judge_lm, config), tick)
    finally:  # the time of interrupted runs counts too: pairs per hour covers the whole build
        pairs.count(SOURCE, "seconds", round(time.perf_counter() - started, 1))
        pairs.save_state()
    report = {**pairs_report(pairs), "student": str(getattr(student_lm, "model", student_lm)),
              "judge": str(getattr(judge_lm, "model", judge_lm)),
              "data": {"source": dataset.source, "fingerprint": dataset.fingerprint(),
                       "train_contracts": len(train.contracts)}}
    write_json_atomic(Path(str(config.out) + ".report.json"), report)
    return report
