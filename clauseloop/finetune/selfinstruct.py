"""Grounded self-instruct: new free-form lawyer questions written by the teacher, answered by a gold clause.

For a few gold clauses of each train contract (one per category first), the teacher LM writes the plain-language
question a lawyer would ask that the clause answers ("Can the distributor sell outside the territory?"). The row
shows what ``ContractQA`` shows for that free question (the question as the task, the passages its retriever picks
for it) and answers with the clause — verbatim by construction, since it is CUAD's gold span. A question survives
only if it passes, in order (each drop is counted in the dataset state):

* ``parse_failed`` — the reply is not one usable question (unparseable, empty, no question mark, absurdly long,
  or a copy of the clause's wording, which would teach retrieval-by-echo rather than by meaning);
* ``too_similar`` — ROUGE-L F ≥ ``rouge_threshold`` against any question kept so far, including those already in
  the file from earlier runs (Self-Instruct's novelty filter: near-duplicates add rows, not knowledge);
* ``round_trip_failed`` — used as the program's query, the question does not retrieve the clause (≥ 20 characters
  of it shown): the student could not copy an answer it is not shown;
* ``judge_rejected`` — with a judge LM and ``judge_threshold``, the judge's score that the clause answers the
  question is below the threshold (or unreadable).

A gold span that is not the contract's text at its offsets is skipped before any teacher call (``not_verbatim``).
So ``clauses = not_verbatim + generated`` and ``generated = parse_failed + too_similar + round_trip_failed +
judge_rejected + kept``. "No clause" rows (``none_rows``) reuse a question kept for a category the contract has no
gold clause for and answer NONE, in ``none_share`` of the rows: the student must learn that a plausible question can
have no answer in this contract.
"""

from __future__ import annotations

import logging
import re
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import dspy
from dspy.utils.exceptions import AdapterParseError
from rouge_score import rouge_scorer, tokenizers

from clauseloop.data import ClauseQuestion, Contract, CuadDataset, Span
from clauseloop.finetune.dataset import SFTDataset, build_per_contract
from clauseloop.finetune.gold import contract_rng, none_count
from clauseloop.finetune.rows import collapse, program_inputs, render_row, shown_part
from clauseloop.finetune.selfinstruct_config import SelfInstructConfig
from clauseloop.engine.reachability import role_errors
from clauseloop.program.judge import parse_score

logger = logging.getLogger(__name__)

SOURCE = "synthetic"
COUNTERS = ("clauses", "not_verbatim", "generated", "parse_failed", "too_similar", "round_trip_failed",
            "judge_rejected", "kept", "none_rows")
# the adapter's end marker: a small teacher otherwise keeps writing up to max_tokens
_STOP = ["[[ ## completed"]
# list markers, labels, quotes and markup a teacher puts before its question
_LEADING_NOISE = re.compile(r"^(?:\s+|[\"'*`>#•-]+|\d+[.)]\s|(?:question|q)\s*[:.-])+", re.IGNORECASE)
_WORD = re.compile(r"[a-z0-9]+")


class WriteLawyerQuestion(dspy.Signature):
    """You help a lawyer review a contract. Write one plain-language question that a lawyer reviewing this contract
    would ask and that the clause answers. Do not copy the clause's wording and do not name its section or number.
    Answer with the question only."""

    category: str = dspy.InputField(desc="the kind of clause")
    clause: str = dspy.InputField(desc="a clause of the contract")
    question: str = dspy.OutputField(desc="one short question ending with a question mark")


class JudgeClauseAnswersQuestion(dspy.Signature):
    """Does this contract clause answer the question? Score from 0 (it does not) to 1 (it fully answers it)."""

    question: str = dspy.InputField()
    clause: str = dspy.InputField(desc="a clause of the contract")
    score: str = dspy.OutputField(desc="a single number from 0.0 to 1.0")


@dataclass(frozen=True)
class Clause:
    """A gold span of a contract and the category it was labelled with."""

    category: str
    span: Span


class NoveltyIndex:
    """The questions kept so far; a new one is novel when its ROUGE-L F with each of them is below the threshold.

    ROUGE-L F is ``2·LCS / (m + n)`` and the LCS cannot exceed the shared unigrams, so an inverted index of tokens
    gives every stored question's unigram overlap at once and the (quadratic) LCS runs only on the few questions
    whose overlap bound reaches the threshold: checking stays fast with thousands of kept questions.
    """

    def __init__(self, threshold: float):
        self.threshold = threshold
        self._tokenizer = tokenizers.DefaultTokenizer(use_stemmer=False)
        self._scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=self._tokenizer)
        self._questions: list[str] = []
        self._lengths: list[int] = []
        self._postings: dict[str, list[tuple[int, int]]] = defaultdict(list)  # token -> [(question, count)]

    def __len__(self) -> int:
        return len(self._questions)

    def add(self, question: str) -> None:
        number = len(self._questions)
        tokens = self._tokenizer.tokenize(question)
        self._questions.append(question)
        self._lengths.append(len(tokens))
        for token, count in Counter(tokens).items():
            self._postings[token].append((number, count))

    def most_similar(self, question: str) -> float:
        """The highest ROUGE-L F of ``question`` against a kept question whose bound reaches the threshold, else 0."""
        tokens = Counter(self._tokenizer.tokenize(question))
        length = sum(tokens.values())
        overlap: Counter = Counter()
        for token, count in tokens.items():
            for number, stored in self._postings.get(token, ()):
                overlap[number] += min(count, stored)
        best = 0.0
        for number, shared in overlap.items():
            if 2 * shared / (length + self._lengths[number]) >= self.threshold:
                score = self._scorer.score(self._questions[number], question)["rougeL"].fmeasure
                best = max(best, score)
        return best

    def is_novel(self, question: str) -> bool:
        return self.most_similar(question) < self.threshold


def pick_clauses(questions: Sequence[ClauseQuestion], config: SelfInstructConfig, rng) -> list[Clause]:
    """Up to ``clauses_per_contract`` gold spans: one per category first (categories in random order), then the
    others; a span labelled with several categories is used once."""
    by_category = {}
    for question in questions:
        spans = [span for span in question.answers if len(span.text.strip()) >= config.min_clause_chars]
        if spans:
            by_category[question.category] = spans
    categories = sorted(by_category)
    rng.shuffle(categories)
    first = [Clause(category, rng.choice(by_category[category])) for category in categories]
    others = [Clause(category, span) for category in categories for span in by_category[category]]
    rng.shuffle(others)
    picked, seen = [], set()
    for clause in first + others:
        if len(picked) == config.clauses_per_contract:
            break
        if (clause.span.start, clause.span.text) not in seen:
            seen.add((clause.span.start, clause.span.text))
            picked.append(clause)
    return picked


def copies_clause(question: str, clause: str, run_words: int = 8) -> bool:
    """True when the question repeats ``run_words`` consecutive words of the clause (or all of a shorter one)."""
    clause_words, question_words = _WORD.findall(clause.lower()), _WORD.findall(question.lower())
    size = min(run_words, len(clause_words))
    if size == 0:
        return False
    runs = {tuple(question_words[i : i + size]) for i in range(len(question_words) - size + 1)}
    return any(tuple(clause_words[i : i + size]) in runs for i in range(len(clause_words) - size + 1))


def clean_question(reply: str | None, clause: str, max_chars: int) -> str | None:
    """The question in a teacher reply (up to its first question mark), or None when there is no usable one."""
    line = next((line for line in (reply or "").splitlines() if "?" in line), "")
    line = _LEADING_NOISE.sub("", line)
    question = collapse(line[: line.find("?") + 1])
    if len(question.split()) < 3 or len(question) > max_chars or copies_clause(question, clause):
        return None
    return question


def clause_excerpt(text: str, max_chars: int) -> str:
    """The clause as the teacher and judge read it: collapsed, cut at a word boundary."""
    text = collapse(text)
    return text if len(text) <= max_chars else text[:max_chars].rsplit(" ", 1)[0] + " …"


def _adapter() -> dspy.ChatAdapter:
    # no JSON retry: a teacher that ignores the chat format is a parse failure, not worth a second call
    return dspy.ChatAdapter(use_json_adapter_fallback=False)


def ask_teacher(teacher_lm: Any, clause: Clause, config: SelfInstructConfig) -> str | None:
    """The teacher's question about the clause, or None when its reply is not a usable question."""
    excerpt = clause_excerpt(clause.span.text, config.max_clause_chars)
    lm_kwargs = {"max_tokens": config.teacher_max_tokens, "stop": _STOP}
    with role_errors({"teacher": teacher_lm}), dspy.context(lm=teacher_lm, adapter=_adapter()):
        try:
            reply = dspy.Predict(WriteLawyerQuestion)(category=clause.category, clause=excerpt, config=lm_kwargs)
            text = reply.question
        except AdapterParseError as error:
            # a reply that ignored the field markers may still hold one clean question (as the judge's score does)
            text = str(error.lm_response or "")
    question = clean_question(text, clause.span.text, config.max_question_chars)
    if question is None:
        logger.debug("teacher reply for %s is not a usable question: %r", clause.category, text[:200])
    return question


def ask_teacher_concurrently(teacher_lm: Any, clauses: Sequence[Clause], config: SelfInstructConfig) -> list:
    """``ask_teacher`` for every clause at once: the local engine batches concurrent requests (a batch of 8
    decodes about as fast as one), and a remote server serves them in parallel."""
    if len(clauses) <= 1 or config.threads <= 1:
        return [ask_teacher(teacher_lm, clause, config) for clause in clauses]
    with ThreadPoolExecutor(min(config.threads, len(clauses))) as pool:
        return list(pool.map(lambda clause: ask_teacher(teacher_lm, clause, config), clauses))


def judge_score(judge_lm: Any, question: str, clause: Clause, config: SelfInstructConfig) -> float | None:
    """The judge's score in [0, 1] that the clause answers the question, or None when it cannot be read."""
    excerpt = clause_excerpt(clause.span.text, config.max_clause_chars)
    with role_errors({"judge": judge_lm}), dspy.context(lm=judge_lm, adapter=_adapter()):
        try:
            raw = dspy.Predict(JudgeClauseAnswersQuestion)(
                question=question, clause=excerpt, config={"max_tokens": 24, "stop": _STOP}
            ).score
        except AdapterParseError as error:
            raw = error.lm_response  # a reply that ignored the format may still hold a readable score
    return parse_score(raw)


@dataclass
class KeptQuestions:
    """Questions kept so far (this run and the file's earlier runs): the novelty index and, per category, the
    questions NONE rows can reuse."""

    novelty: NoveltyIndex
    by_category: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))

    @classmethod
    def from_dataset(cls, dataset: SFTDataset, threshold: float) -> "KeptQuestions":
        kept = cls(NoveltyIndex(threshold))
        for row in dataset.rows():
            if row["source"] == SOURCE and row["quotes"] and row.get("question"):
                kept.add(row["category"], row["question"])
        return kept

    def add(self, category: str, question: str) -> None:
        self.novelty.add(question)
        self.by_category[category].append(question)


def _row(contract: Contract, category: str, question: str, inputs, quotes: list[str], score: float | None) -> dict:
    task, passages, _ = inputs
    return render_row(task=task, passages=passages, quotes=quotes, source=SOURCE, contract_id=contract.id,
                      category=category, question=question, score=score)


def question_row(
    program: Any, contract: Contract, clause: Clause, question: str, kept: KeptQuestions,
    config: SelfInstructConfig, judge_lm: Any = None,
) -> tuple[dict | None, str]:
    """The row for a teacher question, or None, with the outcome: "kept" or the counter of the filter that dropped it
    (cheapest filter first, the judge's LM call last)."""
    if not kept.novelty.is_novel(question):
        return None, "too_similar"
    inputs = program_inputs(program, contract, None, question)
    quote = shown_part(contract, clause.span.start, clause.span.end, inputs[2])
    if len(quote) < config.min_shown_chars:
        return None, "round_trip_failed"
    score = judge_score(judge_lm, question, clause, config) if judge_lm is not None else None
    if config.judge_threshold is not None and (score is None or score < config.judge_threshold):
        return None, "judge_rejected"
    kept.add(clause.category, question)
    return _row(contract, clause.category, question, inputs, [quote], score), "kept"


def none_rows(
    program: Any, contract: Contract, questions: Sequence[ClauseQuestion], kept: KeptQuestions, answer_rows: int,
    config: SelfInstructConfig, rng,
) -> list[dict]:
    """NONE rows: questions kept for categories this contract has no gold clause for, asked of this contract."""
    absent = sorted(q.category for q in questions if not q.answerable and kept.by_category.get(q.category))
    rng.shuffle(absent)
    rows = []
    for category in absent[: none_count(answer_rows, config.none_share, rng)]:
        question = rng.choice(kept.by_category[category])
        rows.append(_row(contract, category, question, program_inputs(program, contract, None, question), [], None))
    return rows


def contract_synthetic_rows(
    program: Any, contract: Contract, questions: Sequence[ClauseQuestion], teacher_lm: Any, kept: KeptQuestions,
    config: SelfInstructConfig, judge_lm: Any = None,
) -> tuple[list[dict], dict[str, int]]:
    """Synthetic rows of one contract and the counts of what each filter dropped."""
    counts = dict.fromkeys(COUNTERS, 0)
    rng = contract_rng(contract.id, config.seed)
    clauses = pick_clauses(questions, config, rng)
    verbatim = [c for c in clauses if contract.text[c.span.start : c.span.end] == c.span.text]
    counts.update(clauses=len(clauses), not_verbatim=len(clauses) - len(verbatim), generated=len(verbatim))
    rows = []
    for clause, question in zip(verbatim, ask_teacher_concurrently(teacher_lm, verbatim, config)):
        if question is None:
            counts["parse_failed"] += 1
            continue
        row, outcome = question_row(program, contract, clause, question, kept, config, judge_lm)
        counts[outcome] += 1
        if row is not None:
            rows.append(row)
    nones = none_rows(program, contract, questions, kept, len(rows), config, rng)
    counts["none_rows"] = len(nones)
    return rows + nones, counts


def build_synthetic_rows(
    dataset: SFTDataset,
    train: CuadDataset,
    program: Any,
    teacher_lm: Any,
    config: SelfInstructConfig = SelfInstructConfig(),
    judge_lm: Any = None,
    on_contract: Callable[[str], None] | None = None,
) -> int:
    """Add the synthetic rows of every train contract not done yet; returns rows written. ``program`` is the
    ``ContractQA`` whose retrieval the questions must round-trip through; ``judge_lm`` (optional) scores each
    kept question; ``on_contract`` is called after each contract (progress). A contract's rows are written
    together when it is finished, so one interrupted by an unreachable teacher leaves nothing and is redone."""
    if config.judge_threshold is not None and judge_lm is None:
        raise ValueError("judge_threshold is set but no judge LM was given: pass judge_lm (--judge) or drop the "
                         "threshold")
    kept = KeptQuestions.from_dataset(dataset, config.rouge_threshold)
    return build_per_contract(
        dataset, SOURCE, train.contracts,
        lambda cid: contract_synthetic_rows(program, train.contracts[cid], train.questions_for(cid), teacher_lm, kept,
                                            config, judge_lm),
        on_contract,
    )
