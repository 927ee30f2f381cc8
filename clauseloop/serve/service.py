"""The answering side of the server: one student LM and one ``ContractQA`` program, shared by every request.

The LM is built on first use (``make_lm``), so the server starts at once and the model loads with the first
question. ``model_version`` names the weights that answered (model + adapter + weights fingerprint): the page
sends it back with each piece of feedback.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path
from typing import Any

from clauseloop.data import Contract
from clauseloop.serve.config import ServeConfig

logger = logging.getLogger(__name__)


class Answerer:
    """``ask`` one contract about a category or question with the configured student; thread-safe."""

    def __init__(self, config: ServeConfig):
        from clauseloop.program.qa import ContractQA, QAConfig

        self.spec = config.student
        self.program = ContractQA(config=QAConfig(gate=config.gate, review_threads=config.review_threads))
        self._lm: Any = None
        self._lock = threading.Lock()

    @property
    def lm(self) -> Any:
        with self._lock:
            if self._lm is None:
                from clauseloop.engine.roles import make_lm

                self._lm = make_lm(self.spec)
            return self._lm

    @property
    def is_local(self) -> bool:
        from clauseloop.engine.roles import is_local_model

        return is_local_model(self.model_name)

    @property
    def model_name(self) -> str:
        return self._lm.model if self._lm is not None else self._resolved_spec()

    def _resolved_spec(self) -> str:
        from clauseloop.engine.roles import ROLES, load_roles

        return load_roles().role(self.spec).model if self.spec in ROLES else self.spec

    def local_engine(self, load: bool = True) -> Any:
        """The student's batching engine (None for a remote LM, or when ``load`` is False and it is not loaded)."""
        lm = self.lm if load else self._lm
        if lm is None or not hasattr(lm, "local_engine"):
            return None
        if load:
            return lm.local_engine
        from clauseloop.engine.batcher import get_engine

        bridge = lm._engine_spec
        return get_engine(bridge.model, bridge.adapter, bridge.engine_config, load=False)

    def model_version(self) -> str:
        engine = self.local_engine(load=True)
        return f"{self.model_name}@{engine.loaded.fingerprint}" if engine is not None else self.model_name

    def info(self) -> dict[str, Any]:
        """What answers: the spec, the model string, its version once loaded, and the adapter's manifest if any."""
        engine = self.local_engine(load=False) if self._lm is not None else None
        return {
            "student": self.spec,
            "model": self.model_name,
            "local": self.is_local,
            "loaded": engine is not None,
            "version": f"{self.model_name}@{engine.loaded.fingerprint}" if engine is not None else None,
            "adapter_manifest": self.adapter_manifest(),
        }

    def adapter_manifest(self) -> dict | None:
        directory = adapter_dir(self.model_name)
        path = directory / "manifest.json" if directory else None
        if path is None or not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as error:
            logger.warning("unreadable adapter manifest %s: %s", path, error)
            return {"error": f"unreadable manifest {path}: {error}"}

    def ask(self, contract: Contract, category: str | None = None, question: str | None = None) -> dict[str, Any]:
        """Spans (text, offsets, confidence) for one category or free question, with the gated flag."""
        import dspy

        inputs = {"category": category} if category else {"question": question}
        with dspy.context(lm=self.lm):
            prediction = self.program(contract=contract, **inputs)
        return {
            "spans": [span.to_dict() for span in prediction.spans],
            "gated": bool(getattr(prediction, "gated", False)),
            "dropped": int(getattr(prediction, "dropped", 0) or 0),
        }


def adapter_dir(model: str) -> Path | None:
    """The adapter directory of a local model string (``BASE+DIR``, or the student's: the registry's promoted
    version, else the shipped one), else None."""
    from clauseloop.models import STUDENT
    from clauseloop.models.store import resolve_alias

    base, _, adapter = model.partition("+")
    if base == STUDENT:
        return Path(resolve_alias(STUDENT)[1])
    return Path(adapter).expanduser() if adapter else None
