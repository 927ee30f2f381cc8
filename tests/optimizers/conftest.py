"""Fixtures for the optimizer tests: a QA program without heavy models, scripted LMs, small example sets.

* ``word_overlap_retriever`` ranks the contract's passages by words shared with the category query, so the
  program runs without MiniLM; the presence gate is off, so every question reaches the LM.
* ``ScriptedEngine`` is a DSPy engine (``dspy.LM(..., engine=...)``) answering every output field the chat
  adapter asks for: unlike ``DummyLM`` its answers go through DSPy's cache like a real LM's, and it counts the
  calls that reach it — what resumability and the call budget are about.
"""

from __future__ import annotations

import re

import dspy
import pytest
from dspy.clients.base_lm import GLOBAL_HISTORY
from dspy.lm15 import Message, Response, TextPart, Usage
from dspy.utils import DummyLM

from clauseloop.optimizers import OptimizeConfig, load_optimization_data
from clauseloop.program.qa import ContractQA, QAConfig
from clauseloop.retrieval.chunking import chunk_contract

# One answer for every signature a teleprompter runs: the QA predictor and MIPROv2's proposers.
# "NONE" is right for questions without a clause, so bootstrapping finds demos among them.
SCRIPTED_FIELDS = {
    "clauses": "NONE",
    "observations": "Commercial contracts with clause categories.",
    "summary": "Commercial contracts; quote clauses verbatim.",
    "program_description": "Retrieves passages and quotes clauses.",
    "module_description": "Quotes the clauses about a category.",
    "proposed_instruction": "Quote verbatim every sentence about the category, one per line, or answer NONE.",
}
_OUTPUT_FIELDS = re.compile(r"Your output fields are:(.*?)All interactions", re.S)


def word_overlap_retriever(contract, query, k):
    words = set(getattr(query, "text", str(query)).lower().split())
    passages = chunk_contract(contract)
    return sorted(passages, key=lambda p: (-len(words & set(p.text.lower().split())), p.start))[:k]


def make_program(dataset) -> ContractQA:
    return ContractQA(dataset.contracts, retriever=word_overlap_retriever, config=QAConfig(gate=False))


def scripted_dummy_lm(name: str = "dummy/student") -> DummyLM:
    lm = DummyLM({"": SCRIPTED_FIELDS})  # "" occurs in every prompt: the same answer forever
    lm.model = name  # tells the roles apart in dspy's global history (copies of an LM keep its name)
    return lm


def calls_of(model: str, since: int = 0) -> list[dict]:
    """Entries of dspy's global LM history (every call, copies included) made by ``model`` after ``since``."""
    return [entry for entry in GLOBAL_HISTORY[since:] if entry["model"] == model]


class ScriptedEngine:
    """Answers each output field named in the system message with ``SCRIPTED_FIELDS``; counts its calls."""

    def __init__(self):
        self.calls = 0

    def complete(self, request) -> Response:
        self.calls += 1
        system = request.system if isinstance(request.system, str) else "".join(p.text for p in request.system or ())
        section = _OUTPUT_FIELDS.search(system)
        names = re.findall(r"`(\w+)`", section.group(1)) if section else []
        reply = "".join(f"[[ ## {name} ## ]]\n{SCRIPTED_FIELDS.get(name, 'ok')}\n\n" for name in names)
        return Response(
            id=f"scripted-{self.calls}", model=request.model,
            message=Message.assistant([TextPart(reply + "[[ ## completed ## ]]")]),
            finish_reason="stop", usage=Usage(input_tokens=1, output_tokens=1),
        )


def scripted_lm(name: str = "scripted/student") -> dspy.LM:
    engine = ScriptedEngine()
    lm = dspy.LM(name, engine=engine, cache=True)
    lm.scripted_engine = engine
    return lm


@pytest.fixture(scope="module")
def small_config() -> OptimizeConfig:
    return OptimizeConfig(max_train_examples=6, max_val_examples=4, gate=False, threads=2, progress=False)


@pytest.fixture(scope="module")
def small_data(demo_dataset, small_config):
    return load_optimization_data(demo_dataset, small_config)


@pytest.fixture
def qa_program(demo_dataset) -> ContractQA:
    return make_program(demo_dataset)
