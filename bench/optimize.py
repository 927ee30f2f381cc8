"""Benchmark: the teleprompters on the local student, and the cost and yield of building the SFT dataset.

    .venv/bin/python bench/optimize.py                          # everything -> bench/results/optimize.{json,md}
    .venv/bin/python bench/optimize.py --only compile,eval      # the optimizers only
    .venv/bin/python bench/optimize.py --only dataset --dataset-contracts 10

* **compile**: `clauseloop optimize` for each optimizer (BootstrapFewShot, random search, MIPROv2 light) with the
  library's default budget (16 train questions, 8 dev questions for validation; teacher = student = the local
  SmolLM2 unless roles say otherwise); records LM calls per role and wall time from each manifest.
* **eval**: the zero-shot program and each compiled one on the same dev questions (410 = 10 per category,
  stratified), on the local student: official CUAD scoring with 95 % bootstrap CIs over contracts.
* **dataset**: `clauseloop finetune data` on the first N train contracts with all three sources: rows per
  source, seconds per source, the teacher's trace pass rate and self-instruct acceptance at each filter.

Every step leaves its output under `bench/out/optimize/` and is skipped when that output exists (compiled
programs, evaluation reports, the dataset file continues), so an interrupted run is re-run at no repeated cost.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
from pathlib import Path

from common import with_ci, write_results

HERE = Path(__file__).parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "cuad" / "cuad-460.json.gz"
OUT = HERE / "out" / "optimize"
OPTIMIZERS = ("bootstrap", "random-search", "mipro")
HEADLINE = ("aupr", "prec_at_80_recall", "f1", "no_answer_accuracy", "laziness")
SYNTHETIC_FILTERS = ("parse_failed", "too_similar", "round_trip_failed", "judge_rejected", "kept")


def compile_one(name: str, data: Path, max_calls: int) -> dict:
    from clauseloop.optimizers import OptimizeConfig, optimize

    out = OUT / name
    if not (out / "manifest.json").exists():
        optimize(OptimizeConfig(optimizer=name, data=str(data), out_dir=str(out), max_calls=max_calls))
    manifest = json.loads((out / "manifest.json").read_text())
    keep = ("lm_calls", "seconds", "dev_scores", "program", "settings")
    return {"dir": str(out), **{key: manifest.get(key) for key in keep}}


def evaluate_one(name: str, program: str, data: Path, limit: int) -> dict:
    from clauseloop.program.evaluation import EvalConfig, evaluate

    out = OUT / f"eval-{name}"
    if not (out / "report.json").exists():
        evaluate(EvalConfig(program=program, data=str(data), split="dev", limit=limit, out_dir=str(out)))
    report = json.loads((out / "report.json").read_text())
    keep = ("data", "overall", "hallucination_rate", "dropped_spans", "parse_failures", "failed_predictions",
            "gated", "seconds", "questions_per_second")
    return {key: report[key] for key in keep}


def build_dataset_sample(data: Path, contracts: int) -> dict:
    from clauseloop.finetune.build import DataConfig, build_dataset

    report = build_dataset(DataConfig(out=str(OUT / "dataset.jsonl"), data=str(data), limit_contracts=contracts))
    report.pop("rows_per_category")
    return report


def markdown(result: dict) -> str:
    lines = ["### Optimizers and training data (`bench/optimize.py`)", ""]
    evals = result.get("eval", {})
    if evals:
        sample = next(iter(evals.values()))["data"]
        lines += [f"Dev split: {sample['questions']} questions stratified by category from {sample['contracts']} "
                  "contracts, local student (SmolLM2-135M), official CUAD scoring, 95 % bootstrap CIs over contracts.",
                  "", "| program | AUPR | P@80R | F1 | no-answer acc. | laziness | dropped-span rate | parse failures "
                  "| questions/s |", "|---|---|---|---|---|---|---|---|---|"]
        for name, report in evals.items():
            cells = [with_ci(report["overall"], key) for key in HEADLINE]
            lines.append(f"| {name} | {' | '.join(cells)} | {report['hallucination_rate']:.3f} | "
                         f"{report['parse_failures']} | {report['questions_per_second']} |")
        lines.append("")
    compiled = result.get("compile", {})
    if compiled:
        lines += ["| optimizer | LM calls (teacher / student) | cache hits | wall time (compile + val. score) | demos |",
                  "|---|---|---|---|---|"]
        for name, run in compiled.items():
            calls, seconds = run["lm_calls"], run["seconds"]
            demos = sum(p["demos"] for p in (run["program"] or {}).values())
            lines.append(f"| {name} | {calls['calls'].get('teacher', 0)} / {calls['calls'].get('student', 0)} | "
                         f"{calls['total_requests'] - calls['total_calls']} | {seconds.get('compile', 0):.0f} s + "
                         f"{seconds.get('score', 0):.0f} s | {demos} |")
        lines.append("")
    if result.get("dataset"):
        lines += dataset_markdown(result["dataset"])
    return "\n".join(lines) + "\n"


def dataset_markdown(report: dict) -> list[str]:
    counts = report["counts"]
    lines = [f"SFT dataset on the first {report['data']['train_contracts']} train contracts: {report['rows']} rows "
             f"({', '.join(f'{s} {n}' for s, n in report['rows_per_source'].items())}), NONE share "
             f"{report['none_share']}.", "", "| source | seconds | what happened |", "|---|---|---|"]
    for source, numbers in counts.items():
        shown = ", ".join(f"{k} {v}" for k, v in numbers.items() if k != "seconds")
        lines.append(f"| {source} | {numbers.get('seconds', 0):.0f} | {shown} |")
    synthetic = counts.get("synthetic")
    if synthetic and synthetic.get("generated"):
        funnel = " → ".join(f"{name} {synthetic.get(name, 0)}" for name in SYNTHETIC_FILTERS)
        lines += ["", f"Self-instruct: {synthetic['generated']} teacher questions: {funnel}."]
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--only", default="compile,eval,dataset", help="comma-separated: compile, eval, dataset")
    parser.add_argument("--optimizers", default=",".join(OPTIMIZERS))
    parser.add_argument("--eval-limit", type=int, default=410, help="dev questions per program (10 per category)")
    parser.add_argument("--max-calls", type=int, default=600, help="LM-call ceiling per optimizer run")
    parser.add_argument("--dataset-contracts", type=int, default=10, help="train contracts for the dataset sample")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "optimize.json")
    args = parser.parse_args()
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: pass --data PATH to a CUADv1.json(.gz)")
    steps, optimizers = args.only.split(","), args.optimizers.split(",")
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    result.update(data=str(args.data), machine={"cpus": os.cpu_count(), "platform": platform.platform()})
    if "compile" in steps:
        result.setdefault("compile", {}).update({o: compile_one(o, args.data, args.max_calls) for o in optimizers})
    if "eval" in steps:
        programs = {"zero-shot": "zero-shot", **{o: str(OUT / o) for o in optimizers if (OUT / o).exists()}}
        evals = result.setdefault("eval", {})
        for name, program in programs.items():
            evals[name] = evaluate_one(name, program, args.data, args.eval_limit)
            write_results(args.out, result, markdown(result))  # keep what is finished if a later one is stopped
    if "dataset" in steps:
        result["dataset"] = build_dataset_sample(args.data, args.dataset_contracts)
    write_results(args.out, result, markdown(result))


if __name__ == "__main__":
    main()
