"""What teleprompters learn from and are scored on: the guards on the examples, their demo fields, the metric.

* At least ``MIN_TRAIN_EXAMPLES`` training examples; a contract found in both sets, or in the held-out test split,
  is refused: demos picked on a contract and scored on it would flatter the program. (Which questions are used is
  decided in :mod:`clauseloop.optimizers.run`.)
* Labeled demos: a CUAD example holds ``contract_id``/``category``/``question``/``gold_spans``, not the fields
  of the program's predictor (``passages`` → ``clauses``), and DSPy's chat adapter silently drops demos without
  them. :func:`with_predictor_fields` adds what the predictor sees: the passages ``ContractQA`` retrieves for the
  question, formatted as the program shows them, and as ``clauses`` the gold quotes *visible in those passages*
  (or ``NONE``). A demo so never quotes text its own prompt does not show: it teaches "quote what you are shown".
  Its ``category`` stays the category name (the program's input), where the live prompt shows name + description.
* :class:`SpanMetric` is CUAD's per-question span F1 (``clauseloop.program.metrics.cuad_f1``) with a
  configurable pass mark for bootstrapping.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

from clauseloop.data import CATEGORY_NAMES
from clauseloop.program.metrics import PASS_F1, cuad_f1

logger = logging.getLogger(__name__)

MIN_TRAIN_EXAMPLES = 2  # one demo and one question to try it on; fewer cannot be optimized
NO_CLAUSE = "NONE"  # what the predictor answers when no passage is about the category


@dataclass(frozen=True)
class SpanMetric:
    """DSPy metric: per-question CUAD span F1; with a trace (bootstrapping) "F1 ≥ ``pass_f1``?".

    A run that made no LM call (the presence gate answered) leaves an empty trace: it is no demo, so it fails
    rather than use up one of the ``max_bootstrapped_demos`` slots with nothing to show.
    """

    pass_f1: float = PASS_F1

    @property
    def __name__(self) -> str:  # DSPy's evaluators name a metric in their logs
        return f"cuad_span_f1_pass_{self.pass_f1:g}"

    def __call__(self, example: Any, pred: Any, trace: Any = None) -> float | bool:
        f1 = cuad_f1(example, pred)
        if trace is None:
            return f1
        return bool(trace) and f1 >= self.pass_f1


def check_trainset_size(trainset: Sequence[Any], minimum: int = MIN_TRAIN_EXAMPLES) -> None:
    if len(trainset) < minimum:
        raise ValueError(
            f"optimizing needs at least {minimum} training examples; got {len(trainset)}: pass more contracts "
            "(--data) or a larger --limit"
        )


def check_contracts_disjoint(
    trainset: Iterable[Any], valset: Iterable[Any] | None, held_out: Iterable[str] = ()
) -> None:
    """Refuse a contract that is both trained and validated on, or that belongs to the held-out test split."""
    train_ids = {example.contract_id for example in trainset}
    val_ids = {example.contract_id for example in valset or ()}
    held_out = set(held_out)
    for name, ids in (("trainset", train_ids), ("valset", val_ids)):
        leaked = sorted(ids & held_out)
        if leaked:
            raise ValueError(
                f"contract {leaked[0]!r} of the {name} belongs to the held-out test split"
                f"{f' (and {len(leaked) - 1} more)' if len(leaked) > 1 else ''}; build the sets from "
                "split_of(dataset, 'train') and split_of(dataset, 'dev') only"
            )
    shared = sorted(train_ids & val_ids)
    if shared:
        raise ValueError(
            f"contract {shared[0]!r} is in both the trainset and the valset"
            f"{f' (and {len(shared) - 1} more)' if len(shared) > 1 else ''}: demos picked on a contract would be "
            "scored on it. Take the sets from different contracts: split_of(dataset, 'train') and "
            "split_of(dataset, 'dev')"
        )


def warn_missing_categories(trainset: Iterable[Any]) -> list[str]:
    """Log (not raise) the CUAD categories no training example covers: no demo can teach them."""
    covered = {getattr(example, "category", None) for example in trainset}
    missing = [name for name in CATEGORY_NAMES if name not in covered]
    if missing and len(missing) < len(CATEGORY_NAMES):
        logger.warning(
            "%d of %d categories have no training example (raise --limit or add contracts to cover them): %s",
            len(missing), len(CATEGORY_NAMES), ", ".join(missing),
        )
    return missing


def visible_gold(gold_spans: Sequence[str], shown_passages: str) -> list[str]:
    """The gold quotes that occur (whitespace-normalized) in the passages as the predictor sees them."""
    shown = " ".join(shown_passages.split())
    return [gold for gold in gold_spans if gold.strip() and " ".join(gold.split()) in shown]


def with_predictor_fields(examples: Sequence[Any], program: Any) -> list[Any]:
    """Copies of CUAD examples carrying ``passages`` and ``clauses``, so they can serve as labeled demos.

    ``program`` is a :class:`~clauseloop.program.qa.ContractQA` holding the examples' contracts.
    """
    from clauseloop.program.qa import format_passages

    contracts = program.shared.contracts
    completed = []
    for example in examples:
        if example.contract_id not in contracts:
            raise KeyError(
                f"the program does not hold contract {example.contract_id!r}; build it with "
                "ContractQA(dataset.contracts) for the dataset the examples come from"
            )
        contract = contracts[example.contract_id]
        passages = program.retrieve(contract, example.category, example.get("question"))
        shown = format_passages(passages, contract.text)
        quotes = visible_gold(example.gold_spans, shown)
        completed.append(example.copy(passages=shown, clauses="\n".join(quotes) if quotes else NO_CLAUSE))
    return completed
