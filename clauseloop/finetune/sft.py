"""Supervised fine-tuning of a LoRA adapter for the local student: TRL's ``SFTTrainer`` + PEFT, on a CPU.

``train_sft(SFTRunConfig(data=FILE, out=DIR))`` trains on the dataset of :mod:`clauseloop.finetune.dataset`
(TRL conversational prompt-completion rows: the loss is on the completion only, TRL's default for this form) and
writes ``DIR/adapter/`` — ``adapter_model.safetensors``, ``adapter_config.json`` and ``manifest.json`` (base model
and its weights hash, dataset fingerprint, config, library versions, metrics) — which loads with
``LocalLM("smollm2-135m-instruct", adapter="DIR/adapter")``. Checkpoints (with optimizer, scheduler and RNG state)
go to ``DIR/checkpoints/``; ``resume=True`` continues from the newest one and ends at the same step an
uninterrupted run would (``DIR/run.json`` keeps the dataset fingerprint the run started with, so resuming on a
changed file is flagged). ``from_adapter`` continues training an existing adapter instead of starting a new one.

CPU settings follow what was measured on this stack: TRL defaults to bf16 and gradient checkpointing, both wrong
without a GPU (bf16 is emulated, 10-20x slower); packing forces padding-free batches meant for FlashAttention.
The trainer is :class:`~clauseloop.finetune.completion_loss.CompletionOnlySFTTrainer`: TRL's, except that off CUDA
the LM head projects the completion positions only (TRL's CPU path projects every prompt position too).
"""

from __future__ import annotations

import json
import logging
import os
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from clauseloop.finetune.sft_data import prepare_training_rows, training_dataset
from clauseloop.models import SMOLLM2, prepare

logger = logging.getLogger(__name__)

RUN_RECORD = "run.json"
ATTENTION_AND_MLP = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


def _help(text: str) -> dict:
    return {"help": text}


DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class SFTRunConfig:
    """One SFT run: data, output, LoRA shape and optimisation (the CLI reads its defaults and help from here)."""

    data: str = field(default="", metadata=_help("SFT dataset file (JSON lines from `clauseloop finetune data`)."))
    out: str = field(default="", metadata=_help("Run directory: the adapter goes to OUT/adapter, checkpoints to "
                                                "OUT/checkpoints."))
    base_model: str = field(default=SMOLLM2, metadata=_help("Model-store name or directory of the base model."))
    from_adapter: str | None = field(
        default=None, metadata=_help("Continue training this adapter directory instead of starting a new LoRA.")
    )
    epochs: float = field(default=1.0, metadata=_help("Passes over the dataset (ignored when max_steps is set)."))
    max_steps: int | None = field(default=None, metadata=_help("Stop after this many optimizer steps."))
    # LoRA's update starts at zero (B = 0) and only a few million weights move, so it needs ~10x the step size of
    # full fine-tuning; 2e-4 is the usual LoRA rate (TRL's default 2e-5 is meant for full fine-tuning).
    learning_rate: float = field(default=2e-4, metadata=_help("Peak learning rate (cosine decay after warmup)."))
    warmup: float = field(default=0.03, metadata=_help("Warmup: a fraction of the steps (< 1) or a step count."))
    batch_size: int = field(default=2, metadata=_help("Rows per forward pass (small: CPU memory and padding)."))
    gradient_accumulation: int = field(
        default=4, metadata=_help("Forward passes per optimizer step (effective batch = batch_size x this).")
    )
    # Measured on 1959 gold rows (system + user prompt with 2 passages + answer): mean 577 tokens, p50 559, p95 753,
    # p99 855, max 1112; 1024 keeps all but 3. A longer row is dropped (and counted), since truncation would cut its
    # completion; padding is to the longest row of a batch, so the limit costs nothing for shorter rows.
    max_length: int = field(default=1024, metadata=_help("Longest row in tokens; longer rows are left out."))
    lora_r: int = field(default=16, metadata=_help("LoRA rank."))
    lora_alpha: int = field(default=32, metadata=_help("LoRA scaling numerator (scale = alpha / r)."))
    lora_dropout: float = field(default=0.05, metadata=_help("Dropout on the LoRA input."))
    target_modules: tuple[str, ...] = field(
        default=ATTENTION_AND_MLP, metadata=_help("Linear layers that get a LoRA (attention and MLP projections).")
    )
    seed: int = field(default=0, metadata=_help("Seed for LoRA initialisation, dropout and data order."))
    save_steps: int = field(default=20, metadata=_help("Write a resumable checkpoint every this many steps."))
    save_total_limit: int = field(default=2, metadata=_help("Checkpoints kept (the oldest are deleted)."))
    # Measured on the 2-core machine while other jobs ran (load 3-7), 64 gold rows of ~590 tokens, same steps and
    # losses for both: default config (batch 2 x 4), 8 steps: 1 thread 108 s/step, 44 tokens/s; 2 threads 149
    # s/step, 32 tokens/s. Interleaved A/B, batch 2 x 1, 4 steps each: 1 thread 16-17 s/step, 73-76 tokens/s;
    # 2 threads 31-49 s/step, 25-40 tokens/s. Two threads contend with each other and with every other process.
    threads: int = field(default=1, metadata=_help("torch threads for training (1 measured fastest on 2 cores)."))
    device: str = field(default="auto", metadata=_help("auto (a GPU when torch sees one, as under `accelerate "
                                                       "launch`), cpu, or cuda."))
    resume: bool = field(default=False, metadata=_help("Continue from the newest checkpoint in OUT/checkpoints."))
    # Against forgetting: general prompts answered by the base model itself (clauseloop.finetune.replay).
    replay: float = field(default=0.2, metadata=_help("General replay rows per domain row (0.2 = one per five; "
                                                      "0 turns replay off)."))

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "learning_rate": self.learning_rate, "batch_size": self.batch_size,
                    "gradient_accumulation": self.gradient_accumulation, "max_length": self.max_length,
                    "lora_r": self.lora_r, "save_steps": self.save_steps, "threads": self.threads}
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.replay < 0:
            raise ValueError(f"replay must be >= 0 (a share of the domain rows), got {self.replay}")
        if "lm_head" in self.target_modules:
            raise ValueError("lm_head cannot take a LoRA (it is tied to the embeddings); remove it from target_modules")


@dataclass(frozen=True)
class SFTResult:
    adapter_dir: str
    manifest: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest["metrics"]


@contextmanager
def _training_environment(threads: int) -> Iterator[None]:
    """No network and no telemetry (trainers report their creation to the hub otherwise); ``threads`` torch
    threads for the run, restored afterwards."""
    import torch

    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    import huggingface_hub.constants as hub_constants

    # huggingface_hub reads these once at import, which may have happened before this call
    hub_constants.HF_HUB_OFFLINE = hub_constants.HF_HUB_DISABLE_TELEMETRY = True
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _checkpoint_to_resume(checkpoints: Path, resume: bool) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if resume and last is None:
        raise FileNotFoundError(f"no checkpoint in {checkpoints} to resume from; run without --resume to start")
    if not resume and last is not None:
        raise ValueError(
            f"{checkpoints} already holds checkpoints ({Path(last).name}); pass --resume to continue that run "
            "or choose a new --out"
        )
    return last


def _check_same_base(adapter: Path, base_model: str) -> None:
    from clauseloop.finetune.sft_output import MANIFEST, read_manifest

    if not (adapter / MANIFEST).is_file():
        return  # an adapter from elsewhere: PEFT itself refuses one whose shapes do not fit
    trained_on = read_manifest(adapter).get("base_model")
    if trained_on != base_model:
        raise ValueError(f"{adapter} was trained on {trained_on!r}, not {base_model!r}; continue it on its own base")


def _record_run_start(out: Path, dataset: dict[str, Any], resuming: bool) -> None:
    """Keep the dataset fingerprint a run started with: resuming on other data skips the wrong rows (the trainer
    skips as many batches as it had trained), so say so."""
    from clauseloop.data.atomic import write_json_atomic

    record = out / RUN_RECORD
    if resuming and record.is_file():
        started_with = json.loads(record.read_text()).get("dataset", {})
        if started_with.get("sha256") != dataset["sha256"]:
            logger.warning(
                "%s changed since this run started (%s rows then, %s now): the resumed run skips the batches it "
                "trained on the old data; start a new --out to train on the new file from its first row",
                dataset["path"], started_with.get("rows"), dataset["rows"],
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(record, {"dataset": dataset})


def _trainable_model(base_path: str, config: SFTRunConfig):
    """(model, peft_config): a new LoRA on the base, or the ``from_adapter`` made trainable (and no peft_config:
    TRL refuses both at once)."""
    import torch
    from peft import LoraConfig, PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(base_path, dtype=torch.float32)
    if config.from_adapter:
        adapter = Path(config.from_adapter).expanduser()
        if not (adapter / "adapter_config.json").is_file():
            raise FileNotFoundError(
                f"{adapter} is not an adapter directory (no adapter_config.json); pass OUT/adapter of an earlier "
                "`clauseloop finetune sft` run"
            )
        _check_same_base(adapter, config.base_model)
        model = PeftModel.from_pretrained(base, str(adapter), is_trainable=True)
        # the saved adapter names its base by store name; PEFT reads the base's config from this field on saving
        for adapter_config in model.peft_config.values():
            adapter_config.base_model_name_or_path = base_path
        return model, None
    lora = LoraConfig(
        task_type="CAUSAL_LM", r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
        target_modules=list(config.target_modules),
    )
    return base, lora


def device_flags(device: str) -> dict[str, bool]:
    """Trainer flags for ``device``: fp32 on the CPU (no bf16 on this class of CPU), bf16 on a GPU that has it.
    Under ``accelerate launch`` each process sees its own GPU, and the trainer spreads the batches over them."""
    import torch

    if device not in DEVICES:
        raise ValueError(f"device must be one of {', '.join(DEVICES)}, got {device!r}")
    cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    bf16 = cuda and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return {"use_cpu": not cuda, "bf16": bf16, "fp16": False}


def _trainer_arguments(config: SFTRunConfig, checkpoints: Path):
    from trl import SFTConfig

    return SFTConfig(
        output_dir=str(checkpoints),
        **device_flags(config.device), packing=False,
        # activation_checkpointing is transformers 5's name for gradient_checkpointing (TRL defaults the old one on)
        gradient_checkpointing=False, activation_checkpointing=False,
        max_length=config.max_length,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.gradient_accumulation,
        num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate, lr_scheduler_type="cosine", warmup_steps=config.warmup,
        seed=config.seed, data_seed=config.seed,
        save_strategy="steps", save_steps=config.save_steps, save_total_limit=config.save_total_limit,
        logging_steps=1, report_to=[],
        include_num_input_tokens_seen="non_padding",  # real tokens per step, for tokens/s
        dataloader_num_workers=0,  # worker processes would compete with training for the two cores
    )


def _replay_rows(domain_rows: int, config: SFTRunConfig) -> list[dict[str, Any]]:
    """``config.replay`` general rows per domain row: general prompts with the base model's own answers."""
    from clauseloop.finetune.replay import replay_count, replay_rows

    return replay_rows(replay_count(domain_rows, config.replay), config.base_model, seed=config.seed)


def _prepare_rows(config: SFTRunConfig, tokenizer, out: Path):
    """Stream the dataset into ``OUT/train-rows.jsonl`` (the rows that fit), then add the replay rows."""
    rows_file = out / "train-rows.jsonl"
    prepared = prepare_training_rows(config.data, tokenizer, config.max_length, rows_file)
    replay = _replay_rows(prepared.summary["rows_trained"], config)
    with rows_file.open("a") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in replay)
    return prepared, {**prepared.summary, "replay_rows": len(replay)}


def train_sft(config: SFTRunConfig, *, callbacks: Sequence[Any] = ()) -> SFTResult:
    """Train (or resume, or continue) a LoRA adapter and write ``config.out/adapter`` atomically.

    ``callbacks`` are extra ``transformers.TrainerCallback``s (e.g. to stop early). Raises ``FileNotFoundError``
    or ``ValueError`` with the fix for a missing, empty or malformed dataset and a bad resume/adapter path.
    """
    from transformers import AutoTokenizer

    from clauseloop.finetune.completion_loss import CompletionOnlySFTTrainer
    from clauseloop.finetune.sft_output import (
        TrainingProgress,
        adapter_manifest,
        parent_lineage,
        write_adapter,
    )

    if not config.data or not config.out:
        raise ValueError("give both the dataset file (--data) and the run directory (--out)")
    out = Path(config.out).expanduser()
    checkpoints = out / "checkpoints"
    resume_from = _checkpoint_to_resume(checkpoints, config.resume)
    with _training_environment(config.threads):
        base_path = prepare(config.base_model).path
        tokenizer = AutoTokenizer.from_pretrained(base_path)
        prepared, data_summary = _prepare_rows(config, tokenizer, out)
        lineage = parent_lineage(config.from_adapter)
        _record_run_start(out, prepared.fingerprint, resuming=resume_from is not None)
        model, lora = _trainable_model(base_path, config)
        progress = TrainingProgress()
        trainer = CompletionOnlySFTTrainer(
            model=model, args=_trainer_arguments(config, checkpoints),
            train_dataset=training_dataset(prepared.file, out / "arrow"), processing_class=tokenizer,
            peft_config=lora, callbacks=[progress, *callbacks],
        )
        if resume_from:
            logger.info("resuming from %s", resume_from)
        output = trainer.train(resume_from_checkpoint=resume_from)
        metrics = progress.summary(trainer.state, output.training_loss)
        manifest = adapter_manifest(
            config=asdict(config), base_path=base_path, dataset={**prepared.fingerprint, **data_summary},
            metrics=metrics, lineage=lineage,
        )
        adapter_dir = write_adapter(trainer.model, out / "adapter", manifest, base_name=config.base_model)
    logger.info("adapter written to %s (%s)", adapter_dir, metrics)
    return SFTResult(str(adapter_dir), manifest)
