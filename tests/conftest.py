"""Shared fixtures. Real-model fixtures are session-scoped: the local models load once per test run."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# The promoted model in a developer's own registry must not change what `clauseloop-student` means in tests.
os.environ["CLAUSELOOP_REGISTRY"] = tempfile.mkdtemp(prefix="clauseloop-test-registry-")

SHARED_CUAD = Path(__file__).resolve().parents[1].parent / "shared" / "cuad" / "cuad-460.json.gz"


@pytest.fixture(scope="session")
def demo_dataset():
    from clauseloop.data import load_cuad

    return load_cuad()


@pytest.fixture(scope="session")
def real_cuad_path() -> Path:
    if not SHARED_CUAD.exists():
        pytest.skip(f"real CUAD data not present at {SHARED_CUAD}")
    return SHARED_CUAD


@pytest.fixture(scope="session")
def smollm2_dir() -> str:
    """The real SmolLM2-135M-Instruct, converted once into the model cache (about 40 s the first time)."""
    from clauseloop.models import SMOLLM2, prepare

    return prepare(SMOLLM2).path
