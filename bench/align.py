"""Benchmark: preference alignment — RLAIF and reviewer pairs, DPO from the shipped SFT student, DPO against SFT.

    .venv/bin/python bench/align.py                  # every part -> bench/results/align.json and align.md
    .venv/bin/python bench/align.py --pair-contracts 2 --feedback-contracts 1 --dpo-steps 1 --limit 41   # smoke

* **pairs** (RLAIF, `clauseloop finetune pairs`): on the first ``--pair-contracts`` train contracts the shipped
  SFT student samples ``--candidates`` answers per question; grounding and gold score them and the judge role
  compares the best and worst in both orders. Pairs per hour, drop reasons, the judge's agreement with gold.
* **feedback**: a simulated reviewer on the next ``--feedback-contracts`` train contracts: the SFT student reviews
  each (41 categories), and where it quoted something that is not the gold clause the reviewer gives a thumbs-down
  with CUAD's gold clause as the correction (`reviewer_feedback`, as in the main job) → the feedback store →
  pairs (`clauseloop.feedback.pairs`).
* **dpo**: `train_dpo` (sigmoid loss, the loop's defaults) continuing the shipped SFT adapter on all pairs, for
  ``--dpo-steps`` optimizer steps.
* **compare**: SFT and DPO on ``--limit`` stratified dev questions (official CUAD scoring, CIs over contracts);
  the judge's win rate of DPO over SFT on the questions where their answers differ (each pair judged in both
  orders; a verdict that flips with the order counts as a tie, as does an unreadable one); retention of each.
  Targets: win rate > 55 %, DPO AUPR not below SFT's CI, retention within 2 points of the base.

The judge role is the local SmolLM2 offline; point `CLAUSELOOP_JUDGE` at a real LM to measure with one. Finished
parts are kept under ``--cache`` and reused while their settings match; ``--fresh`` runs them again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

from common import with_ci, write_results
from distill import BASE, cached, evaluate_one, met, retention, retention_markdown
from qa import DEFAULT_DATA, HEADLINE

HERE = Path(__file__).parent
TARGETS = {"win_rate": 0.55, "retention_drop_points": 2.0}


@lru_cache(maxsize=1)
def cuad(data: Path):
    """The data file, parsed once for every part."""
    from clauseloop.data import load_cuad

    return load_cuad(data)


def train_contract_ids(data: Path) -> list[str]:
    from clauseloop.data import split_of

    return sorted(split_of(cuad(data), "train").contracts)


def rlaif_pairs(args) -> dict:
    from clauseloop.finetune.pairs import PairsConfig, build_pairs

    config = PairsConfig(out=str(args.cache / "rlaif.jsonl"), data=str(args.data), limit_contracts=args.pair_contracts,
                         candidates=args.candidates, student=args.sft_model)
    key = {"data": str(args.data), "contracts": args.pair_contracts, "candidates": args.candidates}
    return cached(args.cache / "rlaif.json", key, lambda: build_pairs(config), args.fresh)


def feedback_pairs(args) -> dict:
    """Reviews of the next train contracts, a simulated reviewer's thumbs-down with corrections, and their pairs."""
    from clauseloop.feedback.pairs import write_feedback_pairs
    from clauseloop.feedback.store import FeedbackStore
    from clauseloop.loop.run import review_contract, reviewer_feedback

    def run() -> dict:
        dataset, database = cuad(args.data), args.cache / "feedback.db"
        database.unlink(missing_ok=True)
        chosen = train_contract_ids(args.data)[args.pair_contracts:args.pair_contracts + args.feedback_contracts]
        started, review_seconds = time.perf_counter(), []
        for contract_id in chosen:
            review = review_contract(dataset.contracts[contract_id], args.sft_model)
            review_seconds.append(review["seconds"])
            reviewer_feedback(review, dataset, database, limit=41)
        with FeedbackStore(database) as store:
            records, stats = store.list(), store.stats()
        counts = write_feedback_pairs(records, dataset, args.cache / "feedback-pairs.jsonl")
        seconds = time.perf_counter() - started
        return {**counts, "contracts": len(chosen), "store": stats, "review_seconds": review_seconds,
                "seconds": round(seconds, 1), "pairs_per_hour": round(counts["pairs"] * 3600 / seconds, 1)}

    key = {"data": str(args.data), "after": args.pair_contracts, "contracts": args.feedback_contracts}
    return cached(args.cache / "feedback.json", key, run, args.fresh)


def merged_pairs(args) -> Path:
    target = args.cache / "all-pairs.jsonl"
    parts = [args.cache / "rlaif.jsonl", args.cache / "feedback-pairs.jsonl"]
    target.write_text("".join(part.read_text() for part in parts if part.is_file()))
    return target


def dpo(args) -> dict:
    from clauseloop.finetune.dpo import DPORunConfig, train_dpo
    from clauseloop.models.store import SHIPPED_STUDENT_DIR

    pairs = merged_pairs(args)
    config = DPORunConfig(pairs=str(pairs), out=str(args.cache / "dpo"), from_adapter=str(SHIPPED_STUDENT_DIR),
                          max_steps=args.dpo_steps)

    def run() -> dict:
        started = time.perf_counter()
        result = train_dpo(config)
        return {"adapter": result.adapter_dir, "metrics": result.metrics, "dataset": result.manifest["dataset"],
                "seconds": round(time.perf_counter() - started, 1)}

    key = {"pairs": pairs.read_text().count("\n"), "steps": args.dpo_steps, "lr": config.learning_rate}
    return cached(args.cache / "dpo.json", key, run, args.fresh)


def answer_of(nbest: list[dict]) -> str:
    """What the program answered, as the judge reads it: its quotes one per line, or NONE."""
    return "\n".join(entry["text"] for entry in nbest if entry.get("text")) or "NONE"


def win_rate(args, sft_dir: Path, dpo_dir: Path) -> dict:
    """The judge's verdicts of DPO against SFT on the dev questions where their answers differ (both orders)."""
    from clauseloop.engine.roles import make_lm
    from clauseloop.finetune.pairs import judge_pairs, verdict_of
    from clauseloop.finetune.rows import program_inputs
    from clauseloop.program.evaluation import build_program

    dataset = cuad(args.data)
    program = build_program("zero-shot", dataset)
    sft, tuned = (json.loads((d / "nbest.json").read_text()) for d in (sft_dir, dpo_dir))
    questions = {q.id: q for q in dataset.questions}
    comparisons = []
    for question_id in sorted(set(sft) & set(tuned)):
        x, y = answer_of(tuned[question_id]), answer_of(sft[question_id])
        if x != y:
            question = questions[question_id]
            _, passages, _ = program_inputs(program, dataset.contracts[question.contract_id], question.category, None)
            comparisons.append((SimpleNamespace(question=question, passages=passages), x, y))
    verdicts = [verdict_of(first[0], second[0]) for first, second in
                judge_pairs(make_lm("judge"), comparisons, threads=16)]
    wins, losses = verdicts.count("x"), verdicts.count("y")
    differing = len(comparisons)
    return {"questions": len(set(sft) & set(tuned)), "differing": differing, "dpo_wins": wins, "sft_wins": losses,
            "ties": differing - wins - losses, "verdicts": {v: verdicts.count(v) for v in sorted(set(verdicts))},
            "win_rate": round((wins + (differing - wins - losses) / 2) / differing, 4) if differing else None}


def compare(args, adapter: str) -> dict:
    dpo_model = f"{BASE}+{adapter}"
    evals = {"SFT": evaluate_one("align-sft", "zero-shot", args.sft_model, args),
             "DPO": evaluate_one("align-dpo", "zero-shot", dpo_model, args)}
    judged = win_rate(args, args.cache / "eval-align-sft", args.cache / "eval-align-dpo")
    kept = {"SFT": retention("sft", args.sft_model, args), "DPO": retention("dpo", dpo_model, args)}
    return {"eval": evals, "judge": judged, "retention": kept}


def pairs_markdown(result: dict) -> list[str]:
    rlaif, feedback = result["rlaif"], result["feedback"]
    agreement = rlaif["judge_gold_agreement"]
    counts = rlaif["counts"].get("rlaif", {})
    drops = ", ".join(f"{name} {counts[name]}" for name in sorted(counts) if name.startswith(("judge_", "no_", "dup")))
    return ["| source | contracts | pairs | pairs/hour | notes |", "|---" * 5 + "|",
            f"| RLAIF (student samples, judge in both orders) | {rlaif['data']['train_contracts']} | {rlaif['pairs']} | {rlaif['pairs_per_hour']} | judge–gold agreement {agreement['rate']} "
            f"({agreement['agree']} of {agreement['agree'] + agreement['disagree']}); dropped: {drops or 'none'} |",
            f"| simulated reviewer (thumbs-down + gold correction) | {feedback['contracts']} | {feedback['pairs']} | "
            f"{feedback['pairs_per_hour']} | {feedback['records']} records, {feedback['unpaired']} unpaired |", ""]


def compare_markdown(result: dict) -> list[str]:
    compared, trained = result["compare"], result["dpo"]
    lines = [f"DPO: {trained['metrics']['steps']} steps on {trained['dataset']['pairs_trained']} pairs "
             f"from the shipped SFT adapter, {trained['seconds']:.0f} s.", "",
             "| model | AUPR | P@80R | F1 | no-answer acc. | laziness | dropped-span rate |", "|---" * 7 + "|"]
    for name, row in compared["eval"].items():
        lines.append(f"| {name} | {' | '.join(with_ci(row['overall'], key) for key in HEADLINE)} | "
                     f"{row['hallucination_rate']:.3f} |")
    judged = compared["judge"]
    rate = judged["win_rate"]
    lines += ["", "| questions | answers differ | DPO wins | SFT wins | ties/inconsistent | DPO win rate | target | met |",
              "|---" * 8 + "|",
              f"| {judged['questions']} | {judged['differing']} | {judged['dpo_wins']} | {judged['sft_wins']} | "
              f"{judged['ties']} | {'–' if rate is None else f'{rate:.3f}'} | > {TARGETS['win_rate']} | "
              f"{met(None if rate is None else rate > TARGETS['win_rate'])} |", ""]
    return lines + retention_markdown(compared["retention"])


def markdown(result: dict) -> str:
    lines = ["### Preference alignment (`bench/align.py`)", "",
             f"Machine: {result['machine']['cpus']} CPUs; data `{result['data']}`; judge `{result['judge']}`.", ""]
    if "feedback" in result:
        lines += pairs_markdown(result)
    if "compare" in result:
        lines += compare_markdown(result)
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    from clauseloop.finetune.pairs import PairsConfig

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--pair-contracts", type=int, default=8, help="train contracts for RLAIF pairs")
    parser.add_argument("--candidates", type=int, default=PairsConfig().candidates, help="answers per question")
    parser.add_argument("--feedback-contracts", type=int, default=4, help="train contracts the reviewer corrects")
    parser.add_argument("--dpo-steps", type=int, default=3, help="DPO optimizer steps (~4 min each on 2 cores)")
    parser.add_argument("--limit", type=int, default=82, help="dev questions per model (2 per category)")
    parser.add_argument("--retention-limit", type=int, default=None, help="RetentionConfig.limit (default: its own)")
    parser.add_argument("--cache", type=Path, default=HERE / "out" / "align", help="where finished parts are kept")
    parser.add_argument("--fresh", action="store_true", help="ignore kept parts and run them again")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "align.json")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: pass --data PATH to a CUADv1.json(.gz)")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no model price list download
    import dspy

    from clauseloop.engine.roles import load_roles
    from clauseloop.models.store import SHIPPED_STUDENT_DIR

    args.sft_model = f"{BASE}+{SHIPPED_STUDENT_DIR}"

    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)  # time LM calls, not cache hits
    args.cache.mkdir(parents=True, exist_ok=True)
    result = {"data": str(args.data), "student": args.sft_model, "judge": load_roles().judge.model,
              "machine": {"cpus": os.cpu_count(), "platform": platform.platform()}}
    result["rlaif"] = rlaif_pairs(args)
    result["feedback"] = feedback_pairs(args)
    write_results(args.out, result, markdown(result))  # keep what is finished if a later part is stopped
    result["dpo"] = dpo(args)
    result["compare"] = compare(args, result["dpo"]["adapter"])
    write_results(args.out, result, markdown(result))


if __name__ == "__main__":
    main()
