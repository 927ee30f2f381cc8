"""Tuned-embedder directories: what a broken one says (the round trip is in tests/retrieval/test_tuning.py)."""

from __future__ import annotations

import numpy as np
import pytest

from clauseloop.models.store import prepare
from clauseloop.models.tuned import LAYERS, TUNED_MANIFEST, TunedEmbedderError, save_tuned


def test_a_tuned_directory_without_its_layers_is_refused_with_a_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAUSELOOP_CACHE", str(tmp_path / "cache"))
    directory = save_tuned(tmp_path / "tuned", {"encoder.layer.5.output.dense.bias": np.zeros(384)},
                           {"base": "minilm-l6"})
    (directory / LAYERS).unlink()
    with pytest.raises(TunedEmbedderError, match="tune-embedder"):
        prepare(str(directory))
    (directory / TUNED_MANIFEST).write_text("{")
    with pytest.raises(TunedEmbedderError, match="unreadable"):
        prepare(str(directory))


@pytest.mark.real_model
def test_layers_that_do_not_fit_the_base_are_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("CLAUSELOOP_CACHE", str(tmp_path / "cache"))
    directory = save_tuned(tmp_path / "tuned", {"encoder.layer.5.output.dense.bias": np.zeros(7)},
                           {"base": "minilm-l6"})
    with pytest.raises(TunedEmbedderError, match="do not fit"):
        prepare(str(directory))
