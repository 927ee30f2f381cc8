"""Direct preference optimisation of the local student's LoRA adapter: TRL's ``DPOTrainer`` on a CPU.

``train_dpo(DPORunConfig(pairs=FILE, from_adapter=SFT_DIR/adapter, out=DIR))`` continues the SFT adapter on the
preference pairs of :mod:`clauseloop.finetune.pairs` (or any file in that form, see
:mod:`clauseloop.finetune.dpo_data`) and writes ``DIR/adapter/`` with a manifest, exactly like an SFT run (the
artifact, checkpoints, resume and run record are :mod:`clauseloop.finetune.sft`'s), so the tuned adapter loads,
ships and is measured the same way.

The reference policy is the SFT adapter itself: TRL copies a trained adapter into a frozen "ref" adapter and
trains the "default" one, so DPO moves the student away from where SFT left it only as far as ``beta`` allows.
``from_base=True`` instead starts a new LoRA on the base model, whose reference is then the base.

No replay rows: SFT mixes in general prompts answered by the base model so the student does not drift on them,
but in DPO a general prompt would need a *rejected* answer too, and any we could make (a truncated or shuffled
base answer) teaches only "do not write gibberish", which the policy already avoids. DPO's drift is instead bounded
by ``beta`` against the SFT reference; whether that is enough is what ``clauseloop finetune retention`` on the DPO
adapter measures.

``method="kto"`` trains with TRL's ``KTOTrainer`` instead, on the same pairs taken apart (chosen = desirable,
rejected = undesirable): KTO needs no pairing, so it is the method for feedback that is mostly lone thumbs. Its
loss estimates a KL term from mismatched completions of a batch, so it needs ``batch_size`` ≥ 2.
``method="orpo"`` uses ORPO (an SFT loss on the chosen answer plus an odds-ratio penalty on the rejected one, no
reference model). TRL 1.16 ships it in ``trl.experimental``, whose API may change in any release: pin TRL when
you rely on it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from clauseloop.finetune.dpo_data import prepare_preference_rows
from clauseloop.finetune.sft import ATTENTION_AND_MLP, device_flags
from clauseloop.models import SMOLLM2, prepare

logger = logging.getLogger(__name__)

# TRL's DPO loss types that need only (prompt, chosen, rejected); "sft" is only meaningful combined with another
LOSSES = ("sigmoid", "ipo", "hinge", "robust", "exo_pair", "nca_pair", "bco_pair", "sppo_hard", "aot", "apo_zero",
          "apo_down", "discopop", "sigmoid_norm")
METHODS = ("dpo", "kto", "orpo")
ROBUST_FLIP_RATE = 0.1  # the Robust DPO paper's typical assumed share of flipped preference labels
REWARD_METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected")


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class DPORunConfig:
    """One DPO run: pairs, output, starting point, loss and optimisation (the CLI reads defaults and help here)."""

    pairs: str = field(default="", metadata=_help("Preference pairs file (JSON lines from `clauseloop finetune "
                                                  "pairs`)."))
    out: str = field(default="", metadata=_help("Run directory: the adapter goes to OUT/adapter, checkpoints to "
                                                "OUT/checkpoints."))
    base_model: str = field(default=SMOLLM2, metadata=_help("Model-store name or directory of the base model."))
    from_adapter: str | None = field(default=None, metadata=_help(
        "The SFT adapter to continue (an SFT run's OUT/adapter); it is also the DPO reference policy."))
    from_base: bool = field(default=False, metadata=_help("Start a new LoRA on the base model instead (reference = "
                                                          "the base); for comparisons."))
    method: str = field(default="dpo", metadata=_help("dpo (TRL's DPOTrainer on the pairs), kto (KTOTrainer on "
                                                      "the pairs taken apart; batch_size >= 2) or orpo (no "
                                                      "reference model; TRL experimental)."))
    loss: str = field(default="sigmoid", metadata=_help(f"DPO loss type: {', '.join(LOSSES)}."))
    beta: float = field(default=0.1, metadata=_help("Strength of the pull towards the reference (higher: stays "
                                                    "closer; for ipo, the regulariser)."))
    label_smoothing: float | None = field(default=None, metadata=_help(
        f"Assumed share of flipped preferences, for the robust loss (default {ROBUST_FLIP_RATE}) and exo_pair."))
    epochs: float = field(default=1.0, metadata=_help("Passes over the pairs (ignored when max_steps is set)."))
    max_steps: int | None = field(default=None, metadata=_help("Stop after this many optimizer steps."))
    # TRL's DPO default 1e-6 is for full fine-tuning; a LoRA moves few weights from B = 0 and needs about 10x the
    # step (as SFT's 2e-4 vs 2e-5). 5e-6 is the alignment-handbook's QLoRA DPO rate: low, because DPO's gradient
    # is on log-ratios against a reference that starts equal to the policy, and a large step overshoots into
    # lowering both answers' likelihood (the known DPO failure of "winning" by making everything less likely).
    learning_rate: float = field(default=5e-6, metadata=_help("Peak learning rate (cosine decay after warmup)."))
    warmup: float = field(default=0.1, metadata=_help("Warmup: a fraction of the steps (< 1) or a step count."))
    batch_size: int = field(default=1, metadata=_help("Pairs per forward pass (each is two sequences)."))
    gradient_accumulation: int = field(
        default=8, metadata=_help("Forward passes per optimizer step (effective batch = batch_size x this).")
    )
    # SFT rows measured at p99 855 tokens; a pair row is the same prompt with one answer per side
    max_length: int = field(default=1024, metadata=_help("Longest prompt + answer in tokens; longer pairs are "
                                                         "left out."))
    precompute_reference: bool = field(default=False, metadata=_help(
        "Compute the reference log-probs in one pass before training (saves a forward per step; costs a pass "
        "over all pairs, again on every resume)."))
    lora_r: int = field(default=16, metadata=_help("LoRA rank (only with from_base)."))
    lora_alpha: int = field(default=32, metadata=_help("LoRA scaling numerator (only with from_base)."))
    lora_dropout: float = field(default=0.05, metadata=_help("Dropout on the LoRA input (only with from_base)."))
    target_modules: tuple[str, ...] = field(default=ATTENTION_AND_MLP, metadata=_help(
        "Linear layers that get a LoRA (only with from_base)."))
    seed: int = field(default=0, metadata=_help("Seed for dropout and data order."))
    save_steps: int = field(default=20, metadata=_help("Write a resumable checkpoint every this many steps."))
    save_total_limit: int = field(default=2, metadata=_help("Checkpoints kept (the oldest are deleted)."))
    # as for SFT: on two cores one torch thread was measured fastest (two contend with each other and the machine)
    threads: int = field(default=1, metadata=_help("torch threads for training (1 measured fastest on 2 cores)."))
    device: str = field(default="auto", metadata=_help("auto (a GPU when torch sees one, as under `accelerate "
                                                       "launch`), cpu, or cuda."))
    resume: bool = field(default=False, metadata=_help("Continue from the newest checkpoint in OUT/checkpoints."))

    def __post_init__(self) -> None:
        positive = {"epochs": self.epochs, "learning_rate": self.learning_rate, "beta": self.beta,
                    "batch_size": self.batch_size, "gradient_accumulation": self.gradient_accumulation,
                    "max_length": self.max_length, "lora_r": self.lora_r, "save_steps": self.save_steps,
                    "threads": self.threads}
        for name, value in positive.items():
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {value}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")
        if self.method not in METHODS:
            raise ValueError(f"unknown method {self.method!r}; choose one of {', '.join(METHODS)}")
        if self.method == "kto" and self.batch_size < 2:
            raise ValueError("KTO estimates its KL term within a batch: give batch_size >= 2 (--batch-size 2)")
        if self.loss not in LOSSES:
            raise ValueError(f"unknown DPO loss {self.loss!r}; choose one of {', '.join(LOSSES)}")
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 0.5:
            raise ValueError(f"label_smoothing must be in [0, 0.5), got {self.label_smoothing}")

    @property
    def smoothing(self) -> float:
        if self.label_smoothing is not None:
            return self.label_smoothing
        return ROBUST_FLIP_RATE if self.loss == "robust" else 0.0


@dataclass(frozen=True)
class DPOResult:
    adapter_dir: str
    manifest: dict[str, Any]

    @property
    def metrics(self) -> dict[str, Any]:
        return self.manifest["metrics"]


def _trainer(config: DPORunConfig, checkpoints: Path):
    """(trainer class, its arguments) for ``config.method``."""
    from trl import DPOConfig, DPOTrainer, KTOConfig, KTOTrainer

    common = _common_arguments(config, checkpoints)
    if config.method == "orpo":
        from trl.experimental.orpo import ORPOConfig, ORPOTrainer

        common.pop("precompute_ref_log_probs")  # ORPO has no reference model
        return ORPOTrainer, ORPOConfig(**common, beta=config.beta)
    if config.method == "kto":
        return KTOTrainer, KTOConfig(**common, loss_type="kto", beta=config.beta)
    return DPOTrainer, DPOConfig(**common, padding_free=False, loss_type=[config.loss], beta=config.beta,
                                 label_smoothing=config.smoothing)


def _common_arguments(config: DPORunConfig, checkpoints: Path) -> dict[str, Any]:
    return dict(
        output_dir=str(checkpoints),
        **device_flags(config.device),
        gradient_checkpointing=False, activation_checkpointing=False,
        max_length=config.max_length,
        precompute_ref_log_probs=config.precompute_reference,
        per_device_train_batch_size=config.batch_size, gradient_accumulation_steps=config.gradient_accumulation,
        num_train_epochs=config.epochs, max_steps=config.max_steps or -1,
        learning_rate=config.learning_rate, lr_scheduler_type="cosine", warmup_steps=config.warmup,
        seed=config.seed, data_seed=config.seed,
        save_strategy="steps", save_steps=config.save_steps, save_total_limit=config.save_total_limit,
        logging_steps=1, report_to=[],
        include_num_input_tokens_seen="non_padding",
        dataloader_num_workers=0,  # worker processes would compete with training for the two cores
    )


def _last_logged(log_history: list[dict[str, Any]], names: Sequence[str]) -> dict[str, float]:
    """The newest logged value of each of ``names`` (the trainer logs them per step)."""
    found: dict[str, float] = {}
    for entry in reversed(log_history):
        for name in names:
            if name in entry and name not in found:
                found[name] = round(float(entry[name]), 4)
    return found


def _policy_only(model) -> Any:
    """The trained adapter alone: TRL's frozen "ref" copy would otherwise be saved as a second adapter."""
    if "ref" in getattr(model, "peft_config", {}):
        model.delete_adapter("ref")
    return model


def _require_inputs(config: DPORunConfig) -> None:
    if not config.pairs or not config.out:
        raise ValueError("give both the pairs file (--pairs) and the run directory (--out)")
    if bool(config.from_adapter) == config.from_base:
        raise ValueError("give the SFT adapter to continue (--from SFT_RUN/adapter) or --from-base, not both "
                         "and not neither")


def train_dpo(config: DPORunConfig, *, callbacks: Sequence[Any] = ()) -> DPOResult:
    """Train (or resume) DPO on the pairs and write ``config.out/adapter`` atomically.

    ``callbacks`` are extra ``transformers.TrainerCallback``s. Raises ``FileNotFoundError`` or ``ValueError``
    with the fix for a missing, empty or malformed pairs file and a bad resume or adapter path.
    """
    from transformers import AutoTokenizer

    from clauseloop.finetune.sft import (  # the SFT run's machinery, shared so both stages behave alike
        _checkpoint_to_resume,
        _record_run_start,
        _trainable_model,
        _training_environment,
    )
    from clauseloop.finetune.sft_data import training_dataset
    from clauseloop.finetune.sft_output import (
        TrainingProgress,
        adapter_manifest,
        parent_lineage,
        write_adapter,
    )

    _require_inputs(config)
    out = Path(config.out).expanduser()
    checkpoints = out / "checkpoints"
    resume_from = _checkpoint_to_resume(checkpoints, config.resume)
    with _training_environment(config.threads):
        base_path = prepare(config.base_model).path
        tokenizer = AutoTokenizer.from_pretrained(base_path)
        prepared = prepare_preference_rows(config.pairs, tokenizer, config.max_length, out / "train-pairs.jsonl")
        lineage = parent_lineage(config.from_adapter)
        _record_run_start(out, prepared.fingerprint, resuming=resume_from is not None)
        model, lora = _trainable_model(base_path, config)
        progress = TrainingProgress()
        trainer_class, arguments = _trainer(config, checkpoints)
        trainer = trainer_class(
            model=model, args=arguments,
            train_dataset=training_dataset(prepared.file, out / "arrow"), processing_class=tokenizer,
            peft_config=lora, callbacks=[progress, *callbacks],
        )
        if resume_from:
            logger.info("resuming from %s", resume_from)
        output = trainer.train(resume_from_checkpoint=resume_from)
        metrics = {**progress.summary(trainer.state, output.training_loss),
                   **_last_logged(trainer.state.log_history, REWARD_METRICS)}
        manifest = adapter_manifest(config=asdict(config), base_path=base_path,
                                    dataset={**prepared.fingerprint, **prepared.summary}, metrics=metrics,
                                    lineage=lineage)
        manifest.update(stage=config.method, reference="base" if config.from_base else config.from_adapter)
        adapter_dir = write_adapter(_policy_only(trainer.model), out / "adapter", manifest,
                                    base_name=config.base_model)
    logger.info("DPO adapter written to %s (%s)", adapter_dir, metrics)
    return DPOResult(str(adapter_dir), manifest)
