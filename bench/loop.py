"""The loop's incremental cost and its gate (`clauseloop.loop`) → bench/results/loop.{json,md}.

    .venv/bin/python bench/loop.py --data ../shared/cuad/cuad-460.json.gz --contracts 100

Three runs on ``--contracts`` contracts of the data, into one fresh loop directory and registry:
1. *full*: ``contracts - 1`` contracts, nothing done yet (index, SFT rows, SFT, evaluation, retention, gate);
2. *unchanged*: the same data again — every stage is skipped (target: ≤ 2 % of the full run's time);
3. *one added*: the held-back train contract arrives (target: ≤ 10 % of the full run's time).
Then the gate on the demo contracts: a candidate tuned at the loop's default learning rate, then one tuned at a
destructive learning rate (0.5), each judged against the model it would replace. Budgets are the loop's defaults unless given.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import write_results  # noqa: E402

TARGETS = {"unchanged": 0.02, "one_added": 0.10}


def subset_file(source: Path, count: int, directory: Path) -> tuple[Path, Path, str]:
    """(file of ``count - 1`` contracts, file of ``count``, the title held back): the first ``count`` titles in
    alphabetical order, so the subset has train, dev and test contracts in the usual shares."""
    from clauseloop.data import load_cuad
    from clauseloop.data.split import _title_key, assign_splits
    from clauseloop.loop.run import data_without

    titles = sorted(contract.title for contract in load_cuad(source).contracts.values())
    chosen, others = titles[:count], set(titles[count:])
    # the last training contract in split order: without it, every other contract keeps its split
    splits = assign_splits(chosen)
    held_back = max((title for title, split in splits.items() if split == "train"), key=lambda t: _title_key(t, ""))
    full = data_without(source, others, directory / "all.json")
    return data_without(source, others | {held_back}, directory / "fewer.json"), full, held_back


def stage_table(report: dict) -> dict[str, dict]:
    return {stage["name"]: {"status": stage["status"], "seconds": stage["seconds"]} for stage in report["stages"]}


def timed_runs(args, directory: Path) -> dict:
    from clauseloop.loop.pipeline import LoopConfig, run_loop

    fewer, full, held_back = subset_file(args.data, args.contracts, directory)
    config = LoopConfig(out=str(directory / "loop"), data=str(fewer), registry=str(directory / "registry"),
                        sft_steps=args.sft_steps, eval_limit=args.eval_limit, progress=False)
    runs = {"full": run_loop(config), "unchanged": run_loop(config)}
    config.data = str(full)
    runs["one_added"] = run_loop(config)
    first = runs["full"]["seconds"]
    return {"contracts": args.contracts, "held_back": held_back, "sft_steps": args.sft_steps,
            "runs": {name: {"seconds": report["seconds"], "share_of_full": round(report["seconds"] / first, 4),
                            "new_contracts": len(report["new_contracts"]), "stages": stage_table(report),
                            "decision": (report.get("decision") or {}).get("promote")}
                     for name, report in runs.items()}}


def gate_runs(directory: Path) -> dict:
    """A good candidate and a destroyed one on the demo contracts, with the loop's tiny test budgets."""
    from clauseloop.data.loaders import demo_path
    from clauseloop.loop.pipeline import LoopConfig, run_loop
    from clauseloop.loop.run import data_without

    from clauseloop.data import load_cuad, split_of

    demo = load_cuad(demo_path())
    last = demo.contracts[sorted(split_of(demo, "train").contracts)[-1]].title  # a training contract arrives
    fewer = data_without(demo_path(), {last}, directory / "demo-fewer.json")
    results = {}
    gentle = LoopConfig().learning_rate
    for name, data, learning_rate in ((f"loop default (lr {gentle:g})", fewer, gentle),
                                      ("destroyed (lr 0.5)", demo_path(), 0.5)):
        config = LoopConfig(out=str(directory / "gate-loop"), data=str(data), registry=str(directory / "gate-reg"),
                            eval_limit=8, sft_steps=2, batch_size=1, gradient_accumulation=1,
                            learning_rate=learning_rate, retention_limit=20, progress=False)
        report = run_loop(config)
        if "decision" not in report:
            raise RuntimeError(f"no candidate in the gate run {name!r}: {report['stages']}")
        decision = report["decision"]
        results[name] = {"promote": decision["promote"], "reasons": decision["reasons"],
                         "metrics": decision["evidence"]["metrics"]}
    return results


def markdown(result: dict) -> str:
    lines = ["### The loop (`bench/loop.py`)", "", *gate_markdown(result["gate"])]
    if "timed" in result:
        lines += timed_markdown(result)
    return "\n".join(lines) + "\n"


def timed_markdown(result: dict) -> list[str]:
    timed = result["timed"]
    lines = ["", f"Machine: {result['machine']['cpus']} CPUs. {timed['contracts']} contracts of `{result['data']}`; "
             f"the full run has {timed['contracts'] - 1}, then the same data again, then one train contract "
             f"added. Incremental SFT: at most {timed['sft_steps']} optimizer steps per run (one pass over the "
             "new rows when that is shorter).", "",
             "| run | new contracts | seconds | share of the full run | target | met | stages that ran |",
             "|---|---|---|---|---|---|---|"]
    for name, run in timed["runs"].items():
        target = TARGETS.get(name)
        ran = ", ".join(f"{stage} {row['seconds']:.0f} s" for stage, row in run["stages"].items()
                        if row["status"] == "ran") or "none"
        met = "–" if target is None else ("yes" if run["share_of_full"] <= target else "**no**")
        lines.append(f"| {name.replace('_', ' ')} | {run['new_contracts']} | {run['seconds']:.1f} | "
                     f"{run['share_of_full']:.3f} | {'–' if target is None else f'≤ {target}'} | {met} | {ran} |")
    return lines


def gate_markdown(gates: dict) -> list[str]:
    lines = ["Promotion gate on the demo contracts (8 fixed questions, 20 retention prompts):", "",
             "| candidate | decision | AUPR current → candidate | F1 current → candidate | reasons |",
             "|---|---|---|---|---|"]
    for name, gate in gates.items():
        metrics = gate["metrics"]
        lines.append(f"| {name} | {'promoted' if gate['promote'] else 'refused'} | "
                     f"{metrics['aupr']['current']:.3f} → {metrics['aupr']['candidate']:.3f} | "
                     f"{metrics['f1']['current']:.3f} → {metrics['f1']['candidate']:.3f} | "
                     f"{'; '.join(gate['reasons']) or '–'} |")
    return lines


def parse_args() -> argparse.Namespace:
    from clauseloop.loop.pipeline import LoopConfig

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/cuad/cuad-460.json.gz"))
    parser.add_argument("--contracts", type=int, default=100, help="contracts in the timed runs")
    parser.add_argument("--sft-steps", type=int, default=LoopConfig().sft_steps)
    parser.add_argument("--eval-limit", type=int, default=LoopConfig().eval_limit)
    parser.add_argument("--out", type=Path, default=Path("bench/results/loop.json"))
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if not args.data.exists():
        raise SystemExit(f"{args.data} not found: pass --data PATH to a CUADv1.json(.gz)")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    with tempfile.TemporaryDirectory(prefix="clauseloop-bench-loop-") as scratch:
        os.environ["CLAUSELOOP_REGISTRY"] = str(Path(scratch) / "registry")  # never the user's registry
        result = {"data": str(args.data), "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
                  "gate": gate_runs(Path(scratch))}
        write_results(args.out, result, markdown(result))  # keep what is finished if the timed runs are stopped
        result["timed"] = timed_runs(args, Path(scratch))
    write_results(args.out, result, markdown(result))


if __name__ == "__main__":
    main()
