"""Benchmark: the distilled student against its baselines, its review time, what it forgot, and the SFT trainer's speed.

    .venv/bin/python bench/distill.py                      # every part -> bench/results/distill.json and distill.md
    .venv/bin/python bench/distill.py --only eval,review --student smollm2-135m-instruct+runs/sft/adapter \\
        --compiled runs/optimize/bootstrap
    .venv/bin/python bench/distill.py --only retention \\
        --retention-models no-replay=smollm2-135m-instruct+runs/a/adapter,replay=smollm2-135m-instruct+runs/b/adapter
    .venv/bin/python bench/distill.py --only throughput --throughput-data runs/sft/gold.jsonl --throughput-steps 8

* **eval**: dev split, 410 questions (10 per category), official CUAD scoring, 95 % bootstrap CIs over contracts,
  via `evaluate`: retrieval-only, base SmolLM2 zero-shot, the SFT student (`--student`, default: the student role)
  and optionally a compiled program on it (`--compiled DIR`). Dropped-span rate = quotes the LM wrote that could not
  be located in the contract / all its quotes; tokens per question from the LM's history. Target: student AUPR
  ≥ 0.30, dropped-span rate ≤ 10 %.
* **review**: `bench/qa.py`'s timing of a 41-category review of the median dev contract, by the student. ≤ 60 s.
* **retention**: `measure_retention` per `--retention-models` adapter. Target: within 2 points of the base with replay.
* **throughput**: non-padding tokens per second of the training steps of `train_sft` (TRL) against a plain PyTorch
  + PEFT loop on the same rows, LoRA, tokenization, batch, accumulation, steps and threads. Target ≥ 0.9×.

Finished parts are kept under `bench/out/distill/` (`--cache`) and reused while their settings match (evaluations
from their `report.json`), so an interrupted run continues; `--fresh` runs them again.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import tempfile
import time
from itertools import islice
from pathlib import Path
from unittest.mock import patch

from common import with_ci, write_results
from qa import DEFAULT_DATA, HEADLINE, time_review

HERE = Path(__file__).parent
CACHE = HERE / "out" / "distill"
PARTS = ("eval", "review", "retention", "throughput")
BASE = "smollm2-135m-instruct"
EVAL_KEEP = ("data", "overall", "hallucination_rate", "dropped_spans", "parse_failures", "failed_predictions",
             "gated", "lm_usage", "tokens_per_question", "seconds", "questions_per_second")
EVAL_SETTINGS = ("program", "data", "split", "limit", "lm", "gate", "seed")
STUDENT_ROWS = ("SFT student", "compiled student")
TARGETS = {"aupr": 0.30, "dropped_span_rate": 0.10, "review_seconds": 60, "retention_drop_points": 2.0,
           "throughput_ratio": 0.9}


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def cached(path: Path, key: dict, compute, fresh: bool = False) -> dict:
    """``compute()``, kept in ``path`` with the settings ``key`` it was made with and reused while they match."""
    if not fresh and path.is_file():
        stored = json.loads(path.read_text())
        if stored.get("key") == key:
            return stored["result"]
    result = compute()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"key": key, "result": result}, indent=2) + "\n")
    return result


def met(ok: bool | None) -> str:
    return "–" if ok is None else ("yes" if ok else "**no**")


def weights_stamp(model: str) -> str | None:
    """Size and mtime of the adapter weights a model string runs (``BASE+ADAPTER``, or ``clauseloop-student``: the
    shipped or promoted adapter): an adapter retrained, shipped or promoted in place is not reused."""
    from clauseloop.models.load import split_adapter

    adapter = split_adapter(model)[1]
    weights = Path(adapter) / "adapter_model.safetensors" if adapter else None
    return f"{weights.stat().st_size}-{weights.stat().st_mtime_ns}" if weights and weights.is_file() else None


def eval_programs(student: str, compiled: Path | None) -> dict[str, tuple[str, str]]:
    """Row name -> (program, LM)."""
    rows = {"retrieval": ("retrieval", student), "base zero-shot": ("zero-shot", BASE),
            "SFT student": ("zero-shot", student)}
    if compiled:
        rows["compiled student"] = (str(compiled), student)
    return rows


def evaluate_one(name: str, program: str, lm: str, args) -> dict:
    from clauseloop.program.evaluation import EvalConfig, evaluate

    out = args.cache / f"eval-{slug(name)}"
    config = EvalConfig(program=program, data=str(args.data), split="dev", limit=args.limit, lm=lm, out_dir=str(out),
                        export_nbest=str(out / "nbest.json"))  # each question's answer, for pairwise judging
    path, stamp = out / "report.json", {"weights": weights_stamp(lm) if program != "retrieval" else None}
    report = json.loads(path.read_text()) if path.is_file() and not args.fresh else None
    stale = report is None or "lm_usage" not in report or not (out / "nbest.json").is_file() or any(
        report["config"].get(key) != getattr(config, key) for key in EVAL_SETTINGS)
    if stale or not (out / "weights.json").is_file() or json.loads((out / "weights.json").read_text()) != stamp:
        report = evaluate(config)
        (out / "weights.json").write_text(json.dumps(stamp))
    return {"program": program, "lm": None if program == "retrieval" else lm,
            **{key: report.get(key) for key in EVAL_KEEP}}


def eval_markdown(evals: dict) -> list[str]:
    data = next(iter(evals.values()))["data"]
    intro = (f"Dev split of `{Path(data['source']).name}` (fingerprint `{data['fingerprint']}`): {data['questions']} "
             f"questions stratified by category from {data['contracts']} contracts; official CUAD scoring, 95 % "
             "bootstrap CIs over contracts. Dropped-span rate = quotes the LM wrote that could not be located in the "
             "contract / all its quotes; tokens = prompt + completion tokens of every LM call / questions. Student "
             f"targets: AUPR ≥ {TARGETS['aupr']:.2f}, dropped-span rate ≤ {TARGETS['dropped_span_rate']:.0%}.")
    header = ("| program | LM | AUPR | P@80R | F1 | no-answer acc. | laziness | dropped-span rate | tokens/question | "
              "seconds | questions/s | AUPR met | dropped met |")
    lines = [intro, "", header, "|---" * 13 + "|"]
    for name, row in evals.items():
        cells = [with_ci(row["overall"], key) for key in HEADLINE]
        checks = (row["overall"]["aupr"] >= TARGETS["aupr"], row["hallucination_rate"] <= TARGETS["dropped_span_rate"])
        aupr_ok, dropped_ok = checks if name in STUDENT_ROWS else (None, None)
        tokens = row["tokens_per_question"] if row["lm_usage"]["calls"] else "–"
        lines.append(f"| {name} | {row['lm'] or '–'} | {' | '.join(cells)} | {row['hallucination_rate']:.3f} | "
                     f"{tokens} | {row['seconds']:.0f} | {row['questions_per_second']} | "
                     f"{met(aupr_ok)} | {met(dropped_ok)} |")
    return lines + [""]


def review(student: str, args) -> dict:
    """`bench/qa.py`'s review timing with the student role pointed at ``student``."""
    from clauseloop.program.qa import QAConfig

    def run() -> dict:
        with patch.dict(os.environ, {"CLAUSELOOP_STUDENT": student}):  # time_review reviews with the student role
            return {"student": student, **time_review(args.data, QAConfig())}

    key = {"student": student, "weights": weights_stamp(student), "data": str(args.data)}
    return cached(args.cache / "review.json", key, run, args.fresh)


def review_markdown(run: dict) -> list[str]:
    config, contract = run["config"], run["contract"]
    intro = (f"Full review of the median dev contract ({contract['chars']:,} characters; file median "
             f"{contract['median_chars_in_file']:,.0f}): all {run['categories']} categories in one `ContractQA.review`"
             f", k = {config['k']}, max_tokens = {config['max_tokens']}, gate {'on' if config.get('gate') else 'off'}.")
    header = ("| student | seconds | target | met | LM calls | prompt tokens | completion tokens | gated | "
              "answered (with gold) | dropped quotes |")
    row = (f"| {run['student']} | {run['seconds']} | ≤ {TARGETS['review_seconds']} s | "
           f"{met(run['seconds'] <= TARGETS['review_seconds'])} | {run['lm_calls']} | {run['prompt_tokens']:,} | "
           f"{run['completion_tokens']:,} | {run['gated']} | {run['categories_answered']} ({run['answered_and_gold']} "
           f"of {run['categories_with_gold']}) | {run['dropped_spans']} |")
    return [intro, "", header, "|---" * 10 + "|", row, ""]


def parse_models(spec: str) -> dict[str, str]:
    """``name=MODEL,name=MODEL`` -> {name: model}."""
    pairs = [item.strip().partition("=") for item in spec.split(",") if item.strip()]
    if any(not (name and sep and model) for name, sep, model in pairs):
        raise SystemExit(f"--retention-models: {spec!r} is not NAME=MODELSTRING,...")
    return {name: model for name, _, model in pairs}


def retention(name: str, model: str, args) -> dict:
    from clauseloop.finetune.retention import RetentionConfig, measure_retention

    settings = {"limit": args.retention_limit} if args.retention_limit else {}
    key = {"model": model, "weights": weights_stamp(model), **settings}
    return cached(args.cache / f"retention-{slug(name)}.json", key,
                  lambda: measure_retention(model, RetentionConfig(**settings)).to_dict(), args.fresh)


def retention_markdown(reports: dict) -> list[str]:
    limit = TARGETS["retention_drop_points"]
    intro = ("General-skill retention (`clauseloop.finetune.retention`): accuracy of base and tuned student on the "
             "checkable general prompts, and mean per-token KL(base || tuned) on the open ones. Target: the adapter "
             f"trained with replay within {limit:.0f} points of the base.")
    header = ("| adapter | model | prompts (checkable / open) | base accuracy | tuned accuracy | drop (points) | "
              "KL per token | target | met |")
    lines = [intro, "", header, "|---" * 9 + "|"]
    for name, report in reports.items():
        score = next(s for s in report["scores"] if s["kind"] == "all")
        lines.append(f"| {name} | {report['model']} | {score['n']} / {report['kl_prompts']} | "
                     f"{score['base_accuracy']:.3f} | {score['tuned_accuracy']:.3f} | {report['accuracy_drop']:.1f} | "
                     f"{report['kl_per_token']:.4f} | ≤ {limit:.0f} | {met(report['accuracy_drop'] <= limit)} |")
    return lines + [""]


def throughput_rows(training, config) -> list[dict]:
    """The first batch x accumulation x steps rows of the dataset that fit the trainer's max_length."""
    from transformers import AutoTokenizer

    from clauseloop.finetune.sft_data import token_length
    from clauseloop.models import prepare

    needed = config.max_steps * config.batch_size * config.gradient_accumulation
    tokenizer = AutoTokenizer.from_pretrained(prepare(config.base_model).path)
    rows = list(islice((row for row in training.rows if token_length(tokenizer, row) <= config.max_length), needed))
    if len(rows) < needed:
        raise SystemExit(f"{training.path}: {len(rows)} rows fit {config.max_length} tokens, {needed} needed")
    return rows


def step_clock():
    """A trainer callback: seconds and non-padding tokens from the start of training to the last optimizer step."""
    from transformers import TrainerCallback

    class StepClock(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.started, self.first_tokens = time.perf_counter(), state.num_input_tokens_seen
            self.seconds, self.tokens = 0.0, 0

        def on_step_end(self, args, state, control, **kwargs):
            self.seconds = time.perf_counter() - self.started
            self.tokens = state.num_input_tokens_seen - self.first_tokens

    return StepClock()


def trainer_run(rows: list[dict], config) -> dict:
    """``train_sft`` on ``rows`` (no replay rows: both contenders see the same data) in a throwaway directory."""
    from dataclasses import replace

    from clauseloop.finetune.sft import train_sft

    with tempfile.TemporaryDirectory(prefix="distill-throughput-") as tmp:
        data = Path(tmp) / "rows.jsonl"
        data.write_text("".join(json.dumps(row) + "\n" for row in rows))
        clock = step_clock()
        result = train_sft(replace(config, data=str(data), out=str(Path(tmp) / "run")), callbacks=[clock])
    metrics = result.metrics
    return {"tokens": int(clock.tokens), "seconds": round(clock.seconds, 2),
            "tokens_per_second": round(clock.tokens / clock.seconds, 1), "steps": metrics["steps"],
            "final_loss": metrics["final_loss"], "manifest_tokens_per_second": metrics["tokens_per_second"]}


def tokenize_row(tokenizer, row: dict) -> tuple[list[int], list[int]]:
    """(input ids, labels) as TRL builds them for a conversational prompt-completion row: the chat template over
    prompt + completion, labels only where it departs from the prompt rendered with the generation prompt."""
    def ids(messages, **kwargs):
        return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kwargs)["input_ids"]

    prompt, full = ids(row["prompt"], add_generation_prompt=True), ids(row["prompt"] + row["completion"])
    start = next((i for i, (a, b) in enumerate(zip(prompt, full)) if a != b), min(len(prompt), len(full)))
    return full, [-100] * start + full[start:]


def collate(batch: list[tuple[list[int], list[int]]], pad: int):
    """Right-padded input ids, attention mask and labels (-100 on padding), to the longest row of the batch."""
    import torch

    width = max(len(ids) for ids, _ in batch)
    ids = torch.tensor([i + [pad] * (width - len(i)) for i, _ in batch])
    mask = torch.tensor([[1] * len(i) + [0] * (width - len(i)) for i, _ in batch])
    labels = torch.tensor([lab + [-100] * (width - len(lab)) for _, lab in batch])
    return ids, mask, labels


def plain_loop(rows: list[dict], config) -> dict:
    """The measuring stick: PEFT LoRA (the trainer's LoraConfig) on the same base, AdamW, clipping as the trainer
    does (max norm 1), ``config.max_steps`` optimizer steps of batch_size x gradient_accumulation rows, in order."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from clauseloop.models import prepare

    previous = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    try:
        path = prepare(config.base_model).path
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = get_peft_model(AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32), LoraConfig(
            task_type="CAUSAL_LM", r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
            target_modules=list(config.target_modules)))
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate)
        examples, size = [tokenize_row(tokenizer, row) for row in rows], config.batch_size
        batches = [examples[i : i + size] for i in range(0, len(examples), size)]
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        tokens, started = 0, time.perf_counter()
        for step in range(config.max_steps):
            step_loss = 0.0
            for batch in batches[step * config.gradient_accumulation : (step + 1) * config.gradient_accumulation]:
                ids, mask, labels = collate(batch, pad)
                tokens += int(mask.sum())
                loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss / config.gradient_accumulation
                loss.backward()
                step_loss += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            optimizer.zero_grad()
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(previous)
    return {"tokens": tokens, "seconds": round(seconds, 2), "tokens_per_second": round(tokens / seconds, 1),
            "steps": config.max_steps, "final_loss": round(step_loss, 4)}


def throughput(args) -> dict:
    from clauseloop.finetune.sft import SFTRunConfig
    from clauseloop.finetune.sft_data import read_training_rows

    training = read_training_rows(args.throughput_data)
    config = SFTRunConfig(max_steps=args.throughput_steps, batch_size=args.throughput_batch, replay=0.0,
                          gradient_accumulation=args.throughput_accumulation)

    def run() -> dict:
        rows = throughput_rows(training, config)
        trainer, plain = trainer_run(rows, config), plain_loop(rows, config)
        return {"data": training.fingerprint(), "rows": len(rows), "steps": config.max_steps,
                "batch_size": config.batch_size, "gradient_accumulation": config.gradient_accumulation,
                "threads": config.threads, "lora": {"r": config.lora_r, "alpha": config.lora_alpha},
                "trainer": trainer, "plain": plain,
                "ratio": round(trainer["tokens_per_second"] / plain["tokens_per_second"], 3)}

    key = {"data": training.fingerprint(), "steps": config.max_steps, "batch": config.batch_size,
           "accumulation": config.gradient_accumulation, "threads": config.threads}
    return cached(args.cache / "throughput.json", key, run, args.fresh)


def throughput_markdown(run: dict) -> list[str]:
    intro = (f"SFT throughput on the first {run['rows']} rows of `{run['data']['path']}` (sha256 "
             f"`{run['data']['sha256'][:12]}`): {run['steps']} optimizer steps of {run['batch_size']} × "
             f"{run['gradient_accumulation']} rows, LoRA r = {run['lora']['r']} on attention and MLP, {run['threads']} "
             "torch thread(s); non-padding tokens over the seconds of the training steps only.")
    lines = [intro, "", "| loop | tokens | seconds | tokens/s | final loss |", "|---" * 5 + "|"]
    for name, key in (("`train_sft` (TRL SFTTrainer + PEFT)", "trainer"), ("plain PyTorch + PEFT loop", "plain")):
        part = run[key]
        lines.append(f"| {name} | {part['tokens']:,} | {part['seconds']} | {part['tokens_per_second']} | "
                     f"{part['final_loss']} |")
    target = TARGETS["throughput_ratio"]
    return lines + ["", "| ratio (trainer / plain) | target | met |", "|---" * 3 + "|",
                    f"| {run['ratio']} | ≥ {target} | {met(run['ratio'] >= target)} |", ""]


def markdown(result: dict) -> str:
    lines = ["### Distilled student (`bench/distill.py`)", "",
             f"Machine: {result['machine']['cpus']} CPUs, {result['machine']['platform']}.", ""]
    for key in PARTS:
        if result.get(key):
            lines += globals()[f"{key}_markdown"](result[key])
    return "\n".join(lines) + "\n"


def parse_args() -> argparse.Namespace:
    from clauseloop.finetune.sft import SFTRunConfig

    defaults = SFTRunConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated: {', '.join(PARTS)}")
    parser.add_argument("--limit", type=int, default=410, help="dev questions per program (10 per category)")
    parser.add_argument("--student", default=None, help="the SFT student's model string (default: the student role)")
    parser.add_argument("--compiled", type=Path, default=None, help="a compiled program directory, run on the student")
    parser.add_argument("--retention-models", default="", help="NAME=MODELSTRING,... of tuned students")
    parser.add_argument("--retention-limit", type=int, default=None, help="RetentionConfig.limit (default: its own)")
    parser.add_argument("--throughput-data", type=Path, default=HERE.parent / "runs" / "sft" / "gold.jsonl")
    parser.add_argument("--throughput-steps", type=int, default=8, help="optimizer steps per contender")
    parser.add_argument("--throughput-batch", type=int, default=defaults.batch_size, help="rows per forward pass")
    parser.add_argument("--throughput-accumulation", type=int, default=defaults.gradient_accumulation,
                        help="forward passes per optimizer step")
    parser.add_argument("--cache", type=Path, default=CACHE, help="where finished parts are kept")
    parser.add_argument("--fresh", action="store_true", help="ignore kept parts and run them again")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "distill.json")
    args = parser.parse_args()
    unknown = set(args.only.split(",")) - set(PARTS)
    if unknown:
        parser.error(f"--only: unknown part(s) {sorted(unknown)}; parts are {', '.join(PARTS)}")
    return args


def main() -> None:
    args = parse_args()
    parts = args.only.split(",")
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # offline: no model price list download
    if {"eval", "review"} & set(parts) and not args.data.exists():
        raise SystemExit(f"{args.data} not found: pass --data PATH to a CUADv1.json(.gz)")
    from clauseloop.engine.roles import load_roles

    student = args.student or load_roles().student.model
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    result.update(data=str(args.data), student=student,
                  machine={"cpus": os.cpu_count(), "platform": platform.platform(), "load_average": os.getloadavg()})
    if "eval" in parts:
        import dspy

        dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)  # time LM calls, not cache hits
        evals = result["eval"] = {}
        for name, (program, lm) in eval_programs(student, args.compiled).items():
            evals[name] = evaluate_one(name, program, lm, args)
            write_results(args.out, result, markdown(result))  # keep what is finished if a later one is stopped
    if "review" in parts:
        result["review"] = review(student, args)
    if "retention" in parts and args.retention_models:
        result["retention"] = {name: retention(name, model, args)
                               for name, model in parse_models(args.retention_models).items()}
    if "throughput" in parts:
        result["throughput"] = throughput(args)
    write_results(args.out, result, markdown(result))


if __name__ == "__main__":
    main()
