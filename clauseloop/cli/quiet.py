"""Library noise out of CLI output unless ``--verbose``.

Without ``--verbose`` the command line hides what the libraries print on every run and the user cannot act on:
transformers' progress bars ("Loading weights", "Writing model shards") and its ``past_key_values`` deprecation
(a FutureWarning and a log line), PEFT's use of the deprecated ``is_gradient_checkpointing``, Hugging Face Hub
download bars, and DSPy's "LM response was truncated" on every answer capped at ``max_tokens`` (the cap is
deliberate: a clause is short). Errors still show.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass

# environment read by the libraries at import: set for a command's process, so they start quiet
QUIET_ENV = {"HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error",
             "HF_DATASETS_DISABLE_PROGRESS_BARS": "1"}
# loggers whose warnings are noise on the command line
QUIET_LOGGERS = ("dspy.clients.lm", "transformers", "huggingface_hub")
NOISY_WARNINGS = (
    (FutureWarning, r".*past_key_values.*"),
    (FutureWarning, r".*is_gradient_checkpointing.*"),  # PEFT reads the deprecated property on every wrap
    (UserWarning, r".*past_key_values.*"),
)


@dataclass
class _Applied:
    env: tuple[str, ...] = ()
    filters: tuple = ()
    levels: tuple[tuple[str, int], ...] = ()
    bars: bool = False


_applied = _Applied()


def quiet_libraries(verbose: bool = False) -> None:
    """Silence library noise (``verbose`` False) or undo an earlier call (``verbose`` True); idempotent."""
    _restore()
    if verbose:
        return
    env = tuple(name for name in QUIET_ENV if name not in os.environ)
    os.environ.update({name: QUIET_ENV[name] for name in env})
    for category, message in NOISY_WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    filters = tuple(warnings.filters[: len(NOISY_WARNINGS)])
    levels = tuple((name, logging.getLogger(name).level) for name in QUIET_LOGGERS)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    _progress_bars(enabled=False)
    _applied.env, _applied.filters, _applied.levels, _applied.bars = env, filters, levels, True


def _restore() -> None:
    """Undo what the last ``quiet_libraries`` did (one process may run several commands, as tests do)."""
    for name in _applied.env:
        if os.environ.get(name) == QUIET_ENV[name]:
            del os.environ[name]
    for entry in _applied.filters:
        if entry in warnings.filters:
            warnings.filters.remove(entry)
    getattr(warnings, "_filters_mutated", lambda: None)()  # the warnings module caches its decisions
    for name, level in _applied.levels:
        logging.getLogger(name).setLevel(level)
    if _applied.bars:
        _progress_bars(enabled=True)
    _applied.env, _applied.filters, _applied.levels, _applied.bars = (), (), (), False


def _progress_bars(enabled: bool) -> None:
    """Libraries already imported read their progress-bar switch now; later imports read the environment."""
    with warnings.catch_warnings():  # the hub warns when its environment variable had disabled them
        warnings.simplefilter("ignore")
        _switch_bars(enabled)


def _switch_bars(enabled: bool) -> None:
    if "transformers" in sys.modules:
        from transformers.utils import logging as transformers_logging

        (transformers_logging.enable_progress_bar if enabled else transformers_logging.disable_progress_bar)()
    if "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars, enable_progress_bars

        (enable_progress_bars if enabled else disable_progress_bars)()
    if "datasets" in sys.modules:  # "Tokenizing train dataset" bars of every SFT run
        from datasets.utils import logging as datasets_logging

        (datasets_logging.enable_progress_bar if enabled else datasets_logging.disable_progress_bar)()


@contextmanager
def library_stdout() -> Iterator[None]:
    """What libraries print to stdout inside a command whose stdout is its result (the trainer's per-step log
    dictionaries): on stderr with ``--verbose``, nowhere without."""
    if not _applied.bars:  # verbose: nothing was silenced
        with redirect_stdout(sys.stderr):
            yield
        return
    with open(os.devnull, "w") as sink, redirect_stdout(sink):
        yield
