"""Benchmark: the QA baselines on CUAD's dev split, and the time of a full 41-category review of a median contract.

    .venv/bin/python bench/qa.py                      # writes bench/results/qa.json and qa.md
    .venv/bin/python bench/qa.py --only review        # just the review timing

Baselines (the same `evaluate` that `clauseloop evaluate` runs, stratified by category, official CUAD scoring
with bootstrap CIs over contracts): the retrieval-only baseline and the zero-shot ContractQA on the base student
(SmolLM2-135M through LocalLM). Review: the dev contract whose length is nearest the median of the whole file,
all 41 categories in one `ContractQA.review` call; the clock starts after the model is loaded and covers
retrieval (indexing the contract), every LM call and grounding.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

from common import with_ci, write_results

HERE = Path(__file__).parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "cuad" / "cuad-460.json.gz"
HEADLINE = ("aupr", "prec_at_80_recall", "f1", "no_answer_accuracy", "laziness")
VARIANTS = {"zero-shot-ungated": ("zero-shot", False)}  # benchmark name -> (program, presence gate on)


def median_contract(dataset, split: str = "dev"):
    """The contract of ``split`` whose length is nearest the median length of the whole dataset."""
    from clauseloop.data import split_of

    median = statistics.median(len(c.text) for c in dataset.contracts.values())
    candidates = split_of(dataset, split).contracts.values()
    return min(candidates, key=lambda c: (abs(len(c.text) - median), c.id)), median


def time_review(data: Path, config) -> dict:
    import dspy

    from clauseloop.data import load_cuad
    from clauseloop.engine.roles import make_lm
    from clauseloop.program.qa import ContractQA

    dataset = load_cuad(str(data))
    contract, median = median_contract(dataset)
    lm = make_lm("student", cache=False)
    program = ContractQA({contract.id: contract}, config=config)
    lm("Say OK.", max_tokens=2)  # load the weights and start the engine outside the clock
    started = time.perf_counter()
    with dspy.context(lm=lm):
        predictions = program.review(contract)
    seconds = time.perf_counter() - started
    usage = [entry.get("usage") or {} for entry in lm.history]
    gold = {q.category for q in dataset.questions if q.contract_id == contract.id and q.answers}
    answered = {category for category, p in predictions.items() if p.spans}
    return {
        "contract": {"id": contract.id, "chars": len(contract.text), "median_chars_in_file": median},
        "config": {"k": config.k, "max_tokens": config.max_tokens, "threads": config.review_threads,
                   "gate": config.gate},
        "gated": sum(bool(getattr(p, "gated", False)) for p in predictions.values()),
        "seconds": round(seconds, 1),
        "target_seconds": 60,
        "categories": len(predictions),
        "lm_calls": len(usage) - 1,
        "prompt_tokens": sum(u.get("prompt_tokens", 0) for u in usage[1:]),
        "completion_tokens": sum(u.get("completion_tokens", 0) for u in usage[1:]),
        "categories_answered": len(answered),
        "categories_with_gold": len(gold),
        "answered_and_gold": len(answered & gold),
        "spans": sum(len(p.spans) for p in predictions.values()),
        "dropped_spans": sum(p.dropped for p in predictions.values()),
    }


def gate_on_split(data: Path, split: str = "dev", recalls: tuple[float, ...] = (0.95, 0.97, 0.99)) -> dict:
    """What the presence gate does on every (contract, category) pair of ``split`` at a few recall settings: the
    share of pairs with a gold clause it lets through to the LM and the share of the others it answers itself."""
    from clauseloop.data import load_cuad, split_of
    from clauseloop.retrieval.gate import PresenceGate
    from clauseloop.retrieval.learned import default_learned

    dataset = split_of(load_cuad(str(data)), split)
    rows = {}
    for recall in recalls:
        gate, passed = PresenceGate(default_learned(), recall), {True: [], False: []}  # has a gold clause -> passed
        for question in dataset.questions:
            passed[bool(question.answers)].append(gate.allows(dataset.contracts[question.contract_id], question.category))
        rows[f"recall {recall}"] = {
            "kept_with_clause": round(sum(passed[True]) / len(passed[True]), 4),
            "gated_without_clause": round(1 - sum(passed[False]) / len(passed[False]), 4),
            "lm_calls_saved": round(1 - (sum(passed[True]) + sum(passed[False])) / len(dataset.questions), 4),
        }
    return {"split": split, "pairs": len(dataset.questions), split: rows,
            "cross_fitted_on_train": default_learned().manifest.get("gate")}


def run_baseline(name: str, data: Path, limit: int, out: Path) -> dict:
    from clauseloop.program.evaluation import EvalConfig, evaluate

    program, gate = VARIANTS.get(name, (name, True))
    config = EvalConfig(program=program, data=str(data), split="dev", limit=limit, out_dir=str(out / name), gate=gate)
    report = evaluate(config)
    keep = ("overall", "hallucination_rate", "parse_failures", "failed_predictions", "gated", "seconds",
            "questions_per_second")
    return {"data": report["data"], **{key: report[key] for key in keep}}


def markdown(result: dict) -> str:
    lines = ["### QA program (`bench/qa.py`)", ""]
    baselines = result.get("baselines", {})
    if baselines:
        any_report = next(iter(baselines.values()))
        lines += [
            f"Dev split of `{Path(result['data']).name}`: {any_report['data']['questions']} questions stratified by "
            f"category from {any_report['data']['contracts']} contracts; official CUAD scoring, 95 % bootstrap CIs "
            "over contracts.",
            "",
            "| baseline | AUPR | P@80R | F1 | no-answer acc. | laziness | dropped-span rate | gated | questions/s |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for name, report in baselines.items():
            overall = report["overall"]
            cells = [with_ci(overall, key) for key in HEADLINE]
            lines.append(
                f"| {name} | {' | '.join(cells)} | {report['hallucination_rate']:.3f} | {report.get('gated', '–')} | "
                f"{report['questions_per_second']} |"
            )
        lines.append("")
    for key in ("review", "review_ungated"):
        review = result.get(key)
        if not review:
            continue
        lines.append(
            f"Full review ({review['categories']} categories) of a {review['contract']['chars']:,}-character dev "
            f"contract (file median {review['contract']['median_chars_in_file']:,.0f}): **{review['seconds']} s** "
            f"(target ≤ {review['target_seconds']} s) — {review['lm_calls']} LM calls, {review['prompt_tokens']:,} "
            f"prompt and {review['completion_tokens']:,} completion tokens, k = {review['config']['k']}, "
            f"max_tokens = {review['config']['max_tokens']}, presence gate {'on' if review['config'].get('gate') else 'off'}"
            f" ({review.get('gated', 0)} categories answered without the LM); {review['categories_answered']} "
            f"categories answered with spans, {review['answered_and_gold']} of the {review['categories_with_gold']} "
            "with a gold clause among them."
        )
        lines.append("")
    gate = result.get("gate")
    if gate:
        train = gate["cross_fitted_on_train"]["cross_fitted"]
        lines += [f"Presence gate on all {gate['pairs']:,} {gate['split']} (contract, category) pairs (and, for "
                  "comparison, cross-fitted on train):", "",
                  "| `gate_recall` | pairs with a clause passed to the LM | pairs without one answered by the gate | "
                  "LM calls saved | train: passed / answered |", "|---|---|---|---|---|"]
        for name, row in gate[gate["split"]].items():
            lines.append(f"| {name.split()[-1]} | {row['kept_with_clause']:.3f} | {row['gated_without_clause']:.3f} | "
                         f"{row['lm_calls_saved']:.3f} | {train[name]['kept_with_clause']:.3f} / "
                         f"{train[name]['gated_without_clause']:.3f} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--limit", type=int, default=410, help="dev questions per baseline (10 per category)")
    parser.add_argument("--only", choices=("review", "baselines"), default=None)
    parser.add_argument("--programs", default="retrieval,zero-shot",
                        help=f"comma-separated: retrieval, zero-shot, {', '.join(VARIANTS)}")
    parser.add_argument("--k", type=int, default=None, help="passages per question (default: QAConfig's)")
    parser.add_argument("--max-tokens", type=int, default=None, help="answer budget (default: QAConfig's)")
    parser.add_argument("--threads", type=int, default=None, help="review concurrency (default: QAConfig's)")
    parser.add_argument("--no-gate", action="store_true",
                        help="review without the presence gate (kept as review_ungated, for comparison)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "qa.json")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no model price list download
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: pass --data PATH to a CUADv1.json(.gz)")
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    result.update(data=str(args.data), machine={"cpus": os.cpu_count(), "platform": platform.platform()})
    if args.only != "baselines":
        from clauseloop.program.qa import QAConfig

        defaults = QAConfig()
        result["review_ungated" if args.no_gate else "review"] = time_review(args.data, QAConfig(
            k=args.k or defaults.k, max_tokens=args.max_tokens or defaults.max_tokens,
            review_threads=args.threads or defaults.review_threads, gate=not args.no_gate,
        ))
        result["gate"] = gate_on_split(args.data)
    if args.only != "review":
        result.setdefault("baselines", {})
        for program in args.programs.split(","):
            result["baselines"][program] = run_baseline(program, args.data, args.limit, HERE / "out" / "qa")
    write_results(args.out, result, markdown(result))


if __name__ == "__main__":
    main()
