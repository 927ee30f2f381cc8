"""Teleprompters (BootstrapFewShot, RandomSearch, MIPROv2) compile the QA program; they never mutate their input.

``optimize(OptimizeConfig(...))`` is the whole stage (data → compiled, scored, saved program); ``Optimizer`` is
the library API (``compile(program, *, trainset, valset=None)`` → a new program); ``save_compiled`` writes a
program directory that ``clauseloop.program.saved.load_compiled`` reads back.
"""

from clauseloop.optimizers.config import OPTIMIZERS, OptimizeConfig

# DSPy takes about 2 s to import: the rest loads on first use, so the CLI can read the config cheaply.
_LAZY = {
    "CallBudgetExceeded": "budget",
    "CallMeter": "budget",
    "OptimizationData": "run",
    "SpanMetric": "data",
    "load_optimization_data": "run",
    "with_predictor_fields": "data",
    "Optimizer": "teleprompters",
    "make_teleprompter": "teleprompters",
    "optimize": "run",
    "build_manifest": "saved",
    "save_compiled": "saved",
}


def __getattr__(name: str):
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f"clauseloop.optimizers.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'clauseloop.optimizers' has no attribute {name!r}")


__all__ = ["OPTIMIZERS", "OptimizeConfig", *sorted(_LAZY)]
