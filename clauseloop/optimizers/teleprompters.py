"""Teleprompters that compile the QA program: BootstrapFewShot, BootstrapFewShotWithRandomSearch and MIPROv2.

``Optimizer(config, student_lm=..., teacher_lm=...).compile(program, trainset=..., valset=...)`` returns a new,
compiled program; the input program is never changed (teleprompters copy it, and so do we before handing it over).

* The **student** LM runs the program wherever a candidate is scored. The **teacher** LM produces the bootstrapped
  demos (``teacher_settings=dict(lm=teacher)``) and is MIPROv2's ``prompt_model``, which writes the candidate
  instructions: a 135M student writes poor ones.
* The metric is CUAD's per-question span F1 (:class:`~clauseloop.optimizers.data.SpanMetric`).
* Every LM call goes through the run's :class:`~clauseloop.optimizers.budget.MeteredCache`: counted per role,
  capped by ``max_calls``, and cached in ``cache_dir`` so an interrupted run resumes.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

import dspy

from clauseloop.engine.reachability import UNREACHABLE, RoleUnavailable, failing_role, unavailable_message
from clauseloop.optimizers.budget import (
    BudgetStop,
    CallBudgetExceeded,
    CallMeter,
    budget_message,
    metered_cache,
    tagged_lm,
)
from clauseloop.optimizers.config import OptimizeConfig
from clauseloop.optimizers.proposer import tolerant_proposals
from clauseloop.optimizers.data import (
    SpanMetric,
    check_contracts_disjoint,
    check_trainset_size,
    warn_missing_categories,
    with_predictor_fields,
)

logger = logging.getLogger(__name__)


@dataclass
class CompileStats:
    """What one ``compile`` (or ``score``) cost and found; ``candidates``: random-search's scored demo sets."""

    seconds: dict[str, float] = field(default_factory=dict)
    candidates: list[dict[str, Any]] = field(default_factory=list)
    instruction_proposals: dict[str, int] = field(default_factory=dict)  # mipro: asked of the teacher / unparseable


def make_teleprompter(config: OptimizeConfig, metric: SpanMetric, *, student_lm: Any, teacher_lm: Any) -> Any:
    """The DSPy teleprompter ``config.optimizer`` names, wired to the teacher."""
    teacher_settings = {"lm": teacher_lm}
    if config.optimizer == "bootstrap":
        return dspy.BootstrapFewShot(
            metric=metric, teacher_settings=teacher_settings, max_rounds=config.max_rounds,
            max_bootstrapped_demos=config.max_bootstrapped_demos, max_labeled_demos=config.max_labeled_demos,
        )
    if config.optimizer == "random-search":
        return dspy.BootstrapFewShotWithRandomSearch(
            metric=metric, teacher_settings=teacher_settings, max_rounds=config.max_rounds,
            max_bootstrapped_demos=config.max_bootstrapped_demos, max_labeled_demos=config.max_labeled_demos,
            num_candidate_programs=config.num_candidate_programs, num_threads=config.threads,
        )
    return dspy.MIPROv2(
        metric=metric, prompt_model=teacher_lm, task_model=student_lm, teacher_settings=teacher_settings,
        max_bootstrapped_demos=config.max_bootstrapped_demos, max_labeled_demos=config.max_labeled_demos,
        auto=config.mipro_preset, num_candidates=config.mipro_num_candidates, num_threads=config.threads,
        seed=config.seed, verbose=False,
    )


class Optimizer:
    """Compiles programs with one teleprompter recipe; one meter (and call ceiling) spans all its runs."""

    def __init__(
        self,
        config: OptimizeConfig = OptimizeConfig(),
        *,
        student_lm: Any = None,
        teacher_lm: Any = None,
        cache_dir: str | Path | None = None,
    ):
        """``student_lm`` defaults to ``dspy.settings.lm``, ``teacher_lm`` to the student; ``cache_dir`` None keeps
        the run's cache in memory only (nothing to resume from)."""
        student_lm = student_lm or dspy.settings.lm
        if student_lm is None:
            raise ValueError("no student LM: pass student_lm=make_lm(...) or dspy.configure(lm=...) first")
        self.config = config
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.meter = CallMeter(config.max_calls)
        self.metric = SpanMetric(config.pass_f1)
        self.student_lm = tagged_lm(student_lm, "student", self.meter)
        self.teacher_lm = tagged_lm(teacher_lm or student_lm, "teacher", self.meter)
        self.stats = CompileStats()

    def compile(
        self,
        program: dspy.Module,
        *,
        trainset: Sequence[Any],
        valset: Sequence[Any] | None = None,
        held_out_contracts: Iterable[str] = (),
    ) -> dspy.Module:
        """A new program optimized on ``trainset`` (candidates scored on ``valset`` where the recipe scores any).

        Refuses: fewer than 2 training examples, a contract in both sets or in ``held_out_contracts``.
        """
        check_trainset_size(trainset)
        check_contracts_disjoint(trainset, valset, held_out_contracts)
        warn_missing_categories(trainset)
        trainset = self._with_demo_fields(program, list(trainset))
        teleprompter = make_teleprompter(
            self.config, self.metric, student_lm=self.student_lm, teacher_lm=self.teacher_lm
        )
        logger.info("optimizing with %s on %d training / %d validation examples", self.config.optimizer,
                    len(trainset), len(valset or ()))
        student = program.deepcopy()
        # DSPy refuses to bootstrap a student marked compiled; a compiled program may be optimized again (its demos
        # are replaced, its instructions kept).
        student._compiled = False
        with self._metered("compile"):
            compiled = self._run(teleprompter, student, trainset, list(valset) if valset else None)
        self.stats.candidates = _candidate_scores(compiled)
        return trim_demos(compiled)

    def score(self, program: dspy.Module, examples: Sequence[Any]) -> list[Any]:
        """The program's predictions on ``examples`` with the student, under the same meter and cache."""
        from clauseloop.program.evaluation import run_examples

        with self._metered("score"), dspy.context(lm=self.student_lm):
            return run_examples(program, list(examples), self.config.threads, self.config.progress)

    def usage(self) -> dict[str, Any]:
        """LM calls per role (``calls`` reached a model, ``requests`` include cache hits) and seconds per phase."""
        return {**self.meter.summary(), "seconds": dict(self.stats.seconds)}

    def _run(self, teleprompter: Any, student: dspy.Module, trainset: list, valset: list | None) -> dspy.Module:
        kwargs: dict[str, Any] = {"trainset": trainset}
        if self.config.optimizer != "bootstrap":
            kwargs["valset"] = valset
        if self.config.optimizer != "mipro":
            with dspy.context(lm=self.student_lm):
                return teleprompter.compile(student, **kwargs)
        kwargs.update(seed=self.config.seed, minibatch=_mipro_minibatch(trainset, valset))
        if self.config.mipro_preset is None:
            kwargs["num_trials"] = self.config.mipro_num_trials
        with dspy.context(lm=self.student_lm), tolerant_proposals() as proposals:
            compiled = teleprompter.compile(student, **kwargs)
        self.stats.instruction_proposals = proposals.to_dict()
        return compiled

    def _with_demo_fields(self, program: dspy.Module, trainset: list) -> list:
        """Give CUAD examples the predictor's fields when labeled demos are wanted (see ``with_predictor_fields``)."""
        from clauseloop.program.qa import ContractQA

        if self.config.max_labeled_demos == 0 or not isinstance(program, ContractQA):
            return trainset
        return with_predictor_fields(trainset, program)

    @contextmanager
    def _metered(self, phase: str) -> Iterator[None]:
        """Run a phase with the metered cache; a spent budget becomes one clear error, and the time is recorded."""
        started = time.perf_counter()
        try:
            with metered_cache(self.cache_dir, self.meter), _quiet_unless(self.config.progress):
                yield
        except BudgetStop:
            raise CallBudgetExceeded(budget_message(self.meter, self.cache_dir)) from None
        except UNREACHABLE as error:
            role = failing_role(error, {"teacher": self.teacher_lm, "student": self.student_lm})
            raise self._unavailable(role, error) from error
        except Exception as error:
            if self.meter.exhausted:  # DSPy wrapped the stop in an error of its own
                raise CallBudgetExceeded(budget_message(self.meter, self.cache_dir)) from error
            raise
        finally:
            self.stats.seconds[phase] = round(self.stats.seconds.get(phase, 0.0) + time.perf_counter() - started, 2)
        unmetered = self.meter.summary()["unmetered"]
        if unmetered:
            logger.warning("%d LM requests skipped the cache (an LM with caching off): --max-calls does not count "
                           "them and a re-run repeats them", unmetered)
        if self.meter.exhausted:  # a stop swallowed on the way: the result may rest on failed examples
            raise CallBudgetExceeded(budget_message(self.meter, self.cache_dir))
        for role, error in self.meter.unreachable.items():  # swallowed by the teleprompter: still no valid result
            raise self._unavailable(role, error) from error

    def _unavailable(self, role: str, error: Exception) -> RoleUnavailable:
        kept = f"Finished LM calls are cached in {self.cache_dir}" if self.cache_dir else "Nothing was saved"
        lm = self.teacher_lm if role == "teacher" else self.student_lm
        return RoleUnavailable(unavailable_message(role, lm, error, kept))


@contextmanager
def _quiet_unless(progress: bool) -> Iterator[None]:
    """DSPy's teleprompters print their progress to stdout; without progress it goes nowhere."""
    if progress:
        yield
        return
    with open(os.devnull, "w") as sink, redirect_stdout(sink):
        yield


def _mipro_minibatch(trainset: Sequence[Any], valset: Sequence[Any] | None) -> bool:
    """Minibatches (of 35) only for a valset above MIPROv2's own threshold of 50, as its presets decide.

    Without a valset MIPROv2 validates on the last 80 % of the trainset.
    """
    size = len(valset) if valset else int(len(trainset) * 0.8)
    return size > 50


def trim_demos(program: dspy.Module) -> dspy.Module:
    """Keep only what a demo shows in the prompt: labeled demos arrive with question ids, gold lists and the like."""
    for predictor in program.predictors():
        shown = {*predictor.signature.fields, "augmented"}  # "augmented": DSPy's mark of a bootstrapped demo
        predictor.demos = [
            dspy.Example(**{key: value for key, value in demo.items() if key in shown}) for demo in predictor.demos
        ]
    return program


def _candidate_scores(compiled: dspy.Module) -> list[dict[str, Any]]:
    """Random-search's candidate scores, taken off the program (it holds every candidate program)."""
    candidates = getattr(compiled, "candidate_programs", None) or []
    if hasattr(compiled, "candidate_programs"):
        del compiled.candidate_programs
    kept = ("seed", "score")  # the rest (the candidate programs themselves) stays out of the manifest
    return [{key: c[key] for key in kept if c.get(key) is not None} for c in candidates if isinstance(c, dict)]
