"""Benchmark: how the student's answers get a confidence, chosen on held-out training contracts.

    .venv/bin/python bench/confidence.py                       # 12 held-out train contracts -> bench/results/confidence.*
    .venv/bin/python bench/confidence.py --split dev --contracts 46   # confirm the chosen rule once on dev

CUAD's AUPR pools every question of the corpus: a prediction on a question without a clause is a false positive,
one matching a gold clause (Jaccard >= 0.5) a true positive, and extra predictions on a question that has a clause
cost nothing. So a span's confidence must rank *questions* (is there such a clause in this contract?) before it
ranks spans. The student reviews whole contracts (all 41 categories, the presence gate on, as users run it); each
answer keeps its features — the quote's token certainty, its retrieval support, the student's ``presence``
(1 - P(NONE) at the first answer token) and the passages shown — and every rule below is scored on the same answers,
with no further LM call:

* ``certainty x support``: the quote's geometric-mean token probability times the passage rank support;
* ``presence x support``: the student's probability that there is a clause, times the support;
* ``presence x certainty x support``;
* ``prior x ...``: the category's base rate — the share of training contracts (the evaluated ones left out) that
  have such a clause — times the rest;
* ``... + passages``: the same, plus the passages shown as lower-ranked candidates (half the confidence) when the
  student quoted nothing it could be located — the student judges presence, retrieval offers the span;
* ``prior x support, passages only``: no LM at all — the passages the student was shown, ranked by prior and support.

Held-out = training-split contracts that no SFT row of the shipped adapter came from (``--exclude-rows``), so the
rule is chosen where the student has not seen the answers, then confirmed once on dev.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import re
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import write_results  # noqa: E402
from qa import DEFAULT_DATA  # noqa: E402

RULES = ("certainty x support", "presence x support", "presence x certainty x support", "prior x certainty x support",
         "presence x support + passages", "prior x certainty x support + passages", "prior x support, passages only")


def held_out_contracts(dataset, split: str, exclude_rows: Path | None, count: int, seed: int) -> list:
    from clauseloop.data import split_of

    part = split_of(dataset, split)
    seen = set()
    if exclude_rows is not None and exclude_rows.is_file():
        seen = {json.loads(line).get("contract_id") for line in exclude_rows.open()}
    ids = sorted(set(part.contracts) - seen)
    random.Random(seed).shuffle(ids)
    return [part.contracts[i] for i in ids[:count]]


def answer_features(prediction) -> dict:
    from clauseloop.program.qa import retrieval_support

    passages = list(prediction.passages)
    return {
        "gated": bool(getattr(prediction, "gated", False)),
        "dropped": int(getattr(prediction, "dropped", 0) or 0),
        "presence": getattr(prediction, "presence", None),
        "certainty": getattr(prediction, "certainty", None),
        "spans": [{"text": s.text, "support": retrieval_support(s.start, s.end, passages)} for s in prediction.spans],
        "passages": [{"text": p.text, "support": retrieval_support(p.start, p.end, passages)} for p in passages],
    }


def review_all(contracts, dataset) -> list[dict]:
    """Every category of every contract, reviewed by the student; one record per question."""
    import dspy

    from clauseloop.engine.roles import make_lm
    from clauseloop.program.qa import ContractQA

    lm = make_lm("student", cache=False)
    program = ContractQA({c.id: c for c in contracts})
    golds = {(q.contract_id, q.category): q for q in dataset.questions}
    records = []
    for number, contract in enumerate(contracts, start=1):
        started = time.perf_counter()
        with dspy.context(lm=lm):
            predictions = program.review(contract)
        for category, prediction in predictions.items():
            question = golds.get((contract.id, category))
            if question is not None:
                records.append({"question_id": question.id, "contract_id": contract.id, "category": category,
                                "gold": [a.text for a in question.answers], **answer_features(prediction)})
        print(f"[{number}/{len(contracts)}] {contract.id[:60]} {time.perf_counter() - started:.0f} s", flush=True)
    return records


def category_prior(dataset, left_out: set[str]) -> dict[str, float]:
    """Per category, the share of training contracts (``left_out`` excluded) with at least one such clause."""
    from collections import Counter

    from clauseloop.data import split_of

    questions = [q for q in split_of(dataset, "train").questions if q.contract_id not in left_out]
    asked, present = Counter(q.category for q in questions), Counter(q.category for q in questions if q.answers)
    return {category: present[category] / count for category, count in asked.items()}


def question_factor(record: dict, rule: str, prior: dict[str, float]) -> float:
    """The product of the question-level factors the rule names (each 1 when the record lacks it)."""
    factors = {"presence": record["presence"], "certainty": record["certainty"], "prior": prior.get(record["category"])}
    value = 1.0
    for name, factor in factors.items():
        if name in rule and factor is not None:
            value *= factor
    return value


def nbest_of(record: dict, rule: str, prior: dict[str, float]) -> list[dict]:
    """The question's official nbest list under ``rule`` (``export.nbest_entries``: ranked, deduplicated)."""
    from clauseloop.program.export import nbest_entries

    factor = question_factor(record, rule, prior)
    passages = [{"text": p["text"], "confidence": factor * p["support"]} for p in record["passages"]]
    spans = [{"text": s["text"], "confidence": factor * s["support"]} for s in record["spans"]]
    if rule.endswith("passages only"):
        spans = passages
    elif rule.endswith("+ passages") and not spans:
        spans = [{**p, "confidence": p["confidence"] / 2} for p in passages]
    return nbest_entries(spans)


def score_rules(records: list[dict], prior: dict[str, float]) -> dict:
    from clauseloop.program.scoring import ScoringConfig, score_corpus
    from clauseloop.program.types import GoldQuestion

    golds = [GoldQuestion(r["question_id"], r["contract_id"], r["category"], tuple(r["gold"])) for r in records]
    scores = {}
    for rule in RULES:
        nbest = {r["question_id"]: nbest_of(r, rule, prior) for r in records}
        score = score_corpus(golds, nbest, ScoringConfig(bootstrap_draws=1000))
        scores[rule] = {"aupr": round(score.aupr, 4), "aupr_ci": [round(x, 4) for x in score.ci["aupr"]],
                        "prec_at_80_recall": round(score.prec_at_80_recall, 4)}
    return scores


def presence_auc(records: list[dict]) -> float | None:
    """How well the student's presence ranks questions with a clause above those without (LM-answered ones)."""
    answered = [(r["presence"], bool(r["gold"])) for r in records if r["presence"] is not None]
    positives = [p for p, has in answered if has]
    negatives = [p for p, has in answered if not has]
    if not positives or not negatives:
        return None
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return round(wins / (len(positives) * len(negatives)), 4)


def dropped_span_rate(records: list[dict]) -> float | None:
    """Quotes the student wrote that could not be found in the contract, over all its quotes."""
    dropped = sum(r.get("dropped", 0) for r in records)
    quotes = dropped + sum(len(r["spans"]) for r in records)
    return round(dropped / quotes, 4) if quotes else None


def markdown(result: dict) -> str:
    lines = ["### Span confidence of the student (`bench/confidence.py`)", "",
             f"{result['questions']} questions ({result['with_clause']} with a clause) from {result['contracts']} "
             f"{result['split']} contracts, reviewed by `{result['student']}` with the presence gate on "
             f"({result['gated']} gated, {result['asked']} asked). Student presence AUC on the asked questions: "
             f"{result['presence_auc']}; dropped-span rate {result.get('dropped_span_rate')}. Chosen on held-out train "
             "contracts, confirmed once on dev.", "",
             "| rule | AUPR | 95 % CI | P@80R |", "|---|---|---|---|"]
    for rule, row in result["rules"].items():
        lines.append(f"| {rule} | {row['aupr']:.3f} | [{row['aupr_ci'][0]:.3f}, {row['aupr_ci'][1]:.3f}] | "
                     f"{row['prec_at_80_recall']:.3f} |")
    return "\n".join(lines) + "\n"


def weights_digest() -> str:
    """The student role's adapter weights, hashed: a cache of answers is reused only for the adapter that gave them
    (the shipped ``clauseloop-student`` changes when a new adapter is shipped or promoted)."""
    from clauseloop.engine.roles import load_roles
    from clauseloop.models.load import split_adapter

    base, adapter = split_adapter(load_roles().student.model)
    weights = Path(adapter) / "adapter_model.safetensors" if adapter else None
    return hashlib.sha256(weights.read_bytes()).hexdigest()[:12] if weights and weights.is_file() else base


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--split", default="train", choices=("train", "dev"))
    parser.add_argument("--contracts", type=int, default=12)
    parser.add_argument("--exclude-rows", type=Path, default=HERE.parent / "runs" / "sft" / "gold-v1.jsonl",
                        help="SFT rows whose contracts are left out (the shipped adapter's training rows)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--student", default=None, help="model string of another student (default: the student role), "
                        "e.g. smollm2-135m-instruct+runs/sft/student-2/adapter")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/confidence[-dev].json")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if args.student:
        os.environ["CLAUSELOOP_STUDENT"] = args.student  # the student role, as `make_lm("student")` reads it
    from clauseloop.data import load_cuad
    from clauseloop.engine.roles import load_roles

    dataset = load_cuad(str(args.data))
    contracts = held_out_contracts(dataset, args.split, args.exclude_rows, args.contracts, args.seed)
    student = load_roles().student.model
    tag = "" if student == "clauseloop-student" else "-" + re.sub(r"[^A-Za-z0-9.]+", "-", student)[-60:]
    cache = HERE / "out" / "confidence" / f"{args.split}-{len(contracts)}-{args.seed}{tag}-{weights_digest()}.jsonl"
    if cache.is_file():
        records = [json.loads(line) for line in cache.open()]
    else:
        records = review_all(contracts, dataset)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text("".join(json.dumps(r) + "\n" for r in records))
    result = {"split": args.split, "contracts": len(contracts), "questions": len(records),
              "with_clause": sum(bool(r["gold"]) for r in records), "gated": sum(r["gated"] for r in records),
              "asked": sum(not r["gated"] for r in records), "student": student,
              "presence_auc": presence_auc(records), "dropped_span_rate": dropped_span_rate(records),
              "rules": score_rules(records, category_prior(dataset, {c.id for c in contracts}))}
    out = args.out or HERE / "results" / f"confidence{'' if args.split == 'train' else '-dev'}{tag}.json"
    write_results(out, result, markdown(result))


if __name__ == "__main__":
    main()
