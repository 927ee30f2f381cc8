"""Optimizer settings: the single source of defaults and help (the CLI reads both from here).

Defaults fit a 2-core CPU with the 135M local model: a handful of training and validation questions, one or two
demos per prompt (every demo adds a few hundred prompt tokens to every later call, and prompt tokens dominate the
cost on CPU) and a hard ceiling on LM calls. Importing this module is cheap (no DSPy), so the CLI can read it at
start-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field

OPTIMIZERS = ("bootstrap", "random-search", "mipro")
TRAINING_SPLITS = ("train", "dev")  # the test split (and "all", which holds it) is for the final evaluation only
MIPRO_AUTO_MODES = ("light", "medium", "heavy")


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class OptimizeConfig:
    """What `clauseloop optimize` runs: which teleprompter, on which questions, with which LMs and budget."""

    optimizer: str = field(
        default="bootstrap",
        metadata=_help("bootstrap (BootstrapFewShot), random-search (…WithRandomSearch) or mipro (MIPROv2)."),
    )
    data: str | None = field(default=None, metadata=_help("CUAD file; None: the demo contracts."))
    out_dir: str = field(
        default="runs/optimize", metadata=_help("Output directory: program.json, manifest.json and the LM cache.")
    )
    teacher: str = field(
        default="teacher",
        metadata=_help("Teacher LM (a role or model string): bootstraps demos and writes MIPROv2's instructions."),
    )
    student: str = field(default="student", metadata=_help("Student LM (a role or model string): runs the program."))
    train_split: str = field(default="train", metadata=_help("Split the training examples come from."))
    val_split: str = field(default="dev", metadata=_help("Split the validation examples come from."))
    # None: every question of the split (library use; the CLI always limits)
    max_train_examples: int | None = field(
        default=16, metadata=_help("At most N training questions, stratified by category.")
    )
    max_val_examples: int | None = field(
        default=8, metadata=_help("At most N validation questions, stratified by category.")
    )
    max_bootstrapped_demos: int = field(
        default=1, metadata=_help("Most demos per prompt taken from the teacher's successful runs.")
    )
    # Labeled demos get the predictor's own fields (passages, clauses) before any teleprompter sees them
    # (clauseloop.optimizers.data.with_predictor_fields); without them the chat adapter would drop them silently.
    max_labeled_demos: int = field(
        default=2, metadata=_help("Most demos per prompt in total, topped up with labeled training questions.")
    )
    max_rounds: int = field(default=1, metadata=_help("Bootstrap attempts per training question."))
    num_candidate_programs: int = field(
        default=2, metadata=_help("random-search: shuffled demo sets tried (plus zero-shot, labeled, unshuffled).")
    )
    mipro_auto: str | None = field(
        default="light", metadata=_help("mipro: DSPy's preset (light, medium, heavy); None: set the two below.")
    )
    mipro_num_candidates: int | None = field(
        default=None, metadata=_help("mipro: instruction and demo-set candidates (overrides the preset).")
    )
    mipro_num_trials: int | None = field(
        default=None, metadata=_help("mipro: search trials (overrides the preset; needs mipro_num_candidates).")
    )
    max_calls: int | None = field(
        default=400,
        metadata=_help("Hard ceiling on LM calls (cached answers are free); a re-run continues where it stopped."),
    )
    threads: int = field(
        default=4, metadata=_help("Concurrent program runs while scoring (the local engine batches them).")
    )
    seed: int = field(default=0, metadata=_help("Seed of the question selection and of MIPROv2's search."))
    pass_f1: float = field(
        default=0.5, metadata=_help("A teacher run becomes a demo when its CUAD span F1 reaches this.")
    )
    gate: bool = field(
        default=True, metadata=_help("The QA program's presence gate: absent categories cost no LM call.")
    )
    progress: bool = field(default=True, metadata=_help("Show DSPy's progress bars."))

    def __post_init__(self) -> None:
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        for name in ("train_split", "val_split"):
            refuse_held_out_split(getattr(self, name))
        if self.train_split == self.val_split:
            raise ValueError(
                f"train_split and val_split are both {self.train_split!r}: validate on other contracts than the "
                "ones demos come from (train_split='train', val_split='dev')"
            )
        self._check_counts()
        if not 0.0 < self.pass_f1 <= 1.0:
            raise ValueError(f"pass_f1 must be in (0, 1], got {self.pass_f1}")
        self._check_mipro()

    def _check_counts(self) -> None:
        for name in ("max_bootstrapped_demos", "max_labeled_demos", "num_candidate_programs"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("max_train_examples", "max_val_examples", "max_calls"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 (or None for no limit), got {value}")
        if self.threads < 1 or self.max_rounds < 1:
            raise ValueError(f"threads and max_rounds must be >= 1, got {self.threads} and {self.max_rounds}")

    def _check_mipro(self) -> None:
        overrides = (self.mipro_num_candidates, self.mipro_num_trials)
        if any(value is not None for value in overrides) and None in overrides:
            raise ValueError("set mipro_num_candidates and mipro_num_trials together (or neither, for the preset)")
        if None in overrides and self.mipro_auto not in MIPRO_AUTO_MODES:
            raise ValueError(f"mipro_auto must be one of {', '.join(MIPRO_AUTO_MODES)} unless both overrides are set")

    @property
    def mipro_preset(self) -> str | None:
        """The MIPROv2 ``auto`` preset, or None when explicit candidates and trials replace it."""
        return None if self.mipro_num_candidates is not None else self.mipro_auto


def refuse_held_out_split(split: str) -> None:
    """Optimizers read the train and dev splits only: the test split is what the final evaluation reports."""
    if split in TRAINING_SPLITS:
        return
    if split in ("test", "all"):
        raise ValueError(
            f"split {split!r} holds the test contracts, which no optimizer may read (scores on them would no longer "
            "estimate unseen contracts); optimize on 'train' and validate on 'dev'"
        )
    raise ValueError(f"unknown split {split!r}; optimizers read {' and '.join(TRAINING_SPLITS)}")
