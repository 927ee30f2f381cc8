"""MIPROv2's instruction proposer, tolerant of a prompt model that cannot answer in DSPy's format.

MIPROv2 asks its prompt model (the teacher role) to write candidate instructions through DSPy's chat adapter. A
weak teacher — the offline default, SmolLM2-135M — often replies with text the adapter cannot parse, and DSPy then
aborts the whole optimization. Here such a proposal falls back to the predictor's current instruction and is
counted, so MIPROv2 still searches over its bootstrapped demo sets and the report says how many instructions the
teacher actually wrote. ``tolerant_proposals()`` swaps the proposer class MIPROv2 instantiates for the duration
of one compile and restores it afterwards.
"""

from __future__ import annotations

import logging
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator
from unittest import mock

from dspy.propose import GroundedProposer
from dspy.utils.exceptions import AdapterParseError

logger = logging.getLogger(__name__)


@dataclass
class ProposalCounts:
    """Instructions the prompt model was asked for, and how many of its replies could not be parsed."""

    proposed: int = 0
    unparseable: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"proposed": self.proposed, "unparseable": self.unparseable}


class TolerantProposer(GroundedProposer):
    """A ``GroundedProposer`` that keeps the current instruction when the prompt model's reply does not parse."""

    counts: ProposalCounts = ProposalCounts()
    _lock = threading.Lock()

    def propose_instruction_for_predictor(self, program, predictor, pred_i, *args, **kwargs) -> str:
        with self._lock:
            self.counts.proposed += 1
        try:
            return super().propose_instruction_for_predictor(program, predictor, pred_i, *args, **kwargs)
        except AdapterParseError:
            with self._lock:
                self.counts.unparseable += 1
            logger.debug("the prompt model's instruction for predictor %d did not parse; keeping the current one", pred_i)
            return predictor.signature.instructions


@contextmanager
def tolerant_proposals() -> Iterator[ProposalCounts]:
    """Within the block MIPROv2 proposes with :class:`TolerantProposer`; yields the counts of this block."""
    counts = ProposalCounts()
    proposer = type("RunProposer", (TolerantProposer,), {"counts": counts})
    with mock.patch("dspy.teleprompt.mipro_optimizer_v2.GroundedProposer", proposer):
        yield counts
    if counts.unparseable:
        logger.warning(
            "the teacher could not write %d of %d instructions in DSPy's format; those candidates keep the "
            "program's own instruction (a stronger --teacher writes real ones)", counts.unparseable, counts.proposed
        )
