"""Learned category queries: per-category term weights (BM25 side) and a dense probe (embedding side).

A :class:`CategoryModel` scores every passage of a contract twice: ``lexical_scores`` sums the learned weights of
the stemmed words and word pairs a passage contains (a logistic regression on bag-of-words features), and
``dense_scores`` is the passage embedding's dot product with a linear probe. Both were fitted on gold clauses of a
training split (:mod:`clauseloop.retrieval.fitting`); the index fuses them with the hand-written hybrid ranking by
reciprocal rank, so a learned model can only add evidence, never hide what BM25 and the embedding found. A fit may
also carry a passage classifier (:mod:`clauseloop.retrieval.classifier`: each category's ``classifier`` head over a
fine-tuned MiniLM stored in the fit's ``classifier/`` directory), which then takes the probe's place. The lexical
model also drives the presence gate (:mod:`clauseloop.retrieval.gate`), which lets the QA program skip the LM for
categories a contract has nothing like.

:class:`LearnedQueries` is the set of models with their manifest (what data they were fitted on, embedder,
chunking, versions). It is stored as ``manifest.json`` + ``weights.safetensors`` (no pickle). The package ships one
fitted on the CUAD train split (``clauseloop/retrieval/learned/``); :func:`default_learned` loads it, or the
directory named by ``$CLAUSELOOP_LEARNED_QUERIES``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from clauseloop.retrieval.chunking import Passage
from clauseloop.retrieval.lexical import tokenize
from clauseloop.retrieval.sections import HEADING_PREFIX, passage_headings

logger = logging.getLogger(__name__)

FORMAT = "clauseloop-learned-queries"
VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
CLASSIFIER_DIR = "classifier"  # the passage classifier's layers (clauseloop.retrieval.classifier), if fitted
SHIPPED_DIR = Path(__file__).with_name("learned")
ENV_VAR = "CLAUSELOOP_LEARNED_QUERIES"
# What passage_term_sets extracts; recorded in a fit's manifest, so a fit made with other features is noticed.
TERM_FEATURES = "stemmed words + word pairs + section-heading words (h:)"


class LearnedQueriesError(RuntimeError):
    """A learned-queries directory that cannot be used; the message says how to fix it."""


def _refit_hint(directory: Path) -> str:
    return f"re-fit it with `clauseloop index fit-queries DATA --split train --out {directory}`"


def passage_terms(text: str, heading: str = "") -> set[str]:
    """The features a lexical model sees: the set of stemmed words and neighbouring word pairs of a passage, and
    those of the heading of its section, prefixed ``h:`` (:mod:`clauseloop.retrieval.sections`)."""
    terms = set(tokenize(text, bigrams=True))
    return terms | {HEADING_PREFIX + term for term in tokenize(heading, bigrams=True)} if heading else terms


def passage_term_sets(passages: Sequence[Passage]) -> list[set[str]]:
    """:func:`passage_terms` of each passage with its section heading (each contract's passages in reading
    order, as chunking returns them)."""
    return [passage_terms(p.text, heading) for p, heading in zip(passages, passage_headings(passages))]


def recall_threshold(ascending: np.ndarray, recall: float) -> float:
    """The highest threshold that at least ``recall`` of the (sorted) ``ascending`` scores reach."""
    misses = int(np.floor((1.0 - recall) * len(ascending) + 1e-9))
    return float(ascending[min(misses, len(ascending) - 1)])


@dataclass(frozen=True, eq=False)
class CategoryModel:
    """One category's learned scorer: term weights (sparse) and an optional dense probe over embeddings."""

    category: str
    terms: dict[str, float]
    dense: np.ndarray | None = None
    embedder: str | None = None  # the probe only means something over embeddings of this model
    # Cross-fitted presence scores of training contracts that have the clause, ascending (retrieval.gate).
    gate: np.ndarray | None = None
    # The passage classifier's head row (retrieval.classifier) and the directory of the classifier it reads.
    classifier: np.ndarray | None = None
    classifier_embedder: str | None = None

    def gate_threshold(self, recall: float) -> float | None:
        """The presence score below which a contract is taken to have no clause, keeping ``recall`` of the
        held-out training contracts that have one (None: this category is never gated)."""
        return recall_threshold(self.gate, recall) if self.gate is not None and len(self.gate) else None

    def lexical_scores(self, term_sets: Sequence[set[str]]) -> np.ndarray:
        """Sum of the learned weights of each passage's terms (a logit without its constant bias)."""
        weights = self.terms
        return np.array([sum(weights.get(t, 0.0) for t in terms) for terms in term_sets], dtype=np.float64)

    def dense_scores(self, embeddings: np.ndarray) -> np.ndarray:
        if self.dense is None:
            return np.zeros(len(embeddings), dtype=np.float64)
        return np.asarray(embeddings, dtype=np.float32) @ self.dense

    def top_terms(self, n: int = 10) -> list[str]:
        """The words that most mark a passage as this category: the explanation of the lexical model."""
        return [t for t, _ in sorted(self.terms.items(), key=lambda item: -item[1])[:n]]


@dataclass
class LearnedQueries:
    """Fitted :class:`CategoryModel` per category (keyed by lower-case name) with the manifest of the fit."""

    models: dict[str, CategoryModel]
    manifest: dict = field(default_factory=dict)

    def get(self, category: str) -> CategoryModel | None:
        return self.models.get(category.strip().lower())

    def __contains__(self, category: str) -> bool:
        return self.get(category) is not None

    def __len__(self) -> int:
        return len(self.models)

    @property
    def embedder(self) -> str | None:
        return self.manifest.get("embedder")


def data_fingerprint(contracts: dict, questions: Sequence) -> str:
    """A short hash of the training contracts and their gold spans: which data a fit saw."""
    digest = hashlib.sha256()
    for cid in sorted(contracts):
        digest.update(hashlib.sha256(f"{cid}\0{contracts[cid].text}".encode()).digest())
    for q in sorted(questions, key=lambda q: q.id):
        digest.update(f"{q.id}\0{[(s.start, s.text) for s in q.answers]}".encode())
    return digest.hexdigest()[:32]


# ---- persistence -----------------------------------------------------------------------------------------------
def save_learned(learned: LearnedQueries, directory: str | Path) -> Path:
    """Write ``weights.safetensors`` and ``manifest.json``.

    The manifest holds the provenance, one shared sorted ``vocabulary`` of every kept term, and per category its
    name; the weights file holds, per category ``n``, ``terms.n`` (indices into the vocabulary), ``weights.n``
    (float16: ranking needs no more), ``dense.n`` (the float32 probe, if any) and ``gate.n`` (the presence gate's
    cross-fitted scores, if any), plus the weights' checksum.
    """
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    _carry_classifier(learned, directory)
    vocabulary = sorted({term for model in learned.models.values() for term in model.terms})
    column = {term: n for n, term in enumerate(vocabulary)}
    tensors, categories = {}, []
    for n, name in enumerate(sorted(learned.models)):
        model = learned.models[name]
        terms = sorted(model.terms, key=column.__getitem__)
        index_type = np.uint16 if len(vocabulary) <= 1 << 16 else np.int32  # halves the shipped file
        tensors[f"terms.{n}"] = np.array([column[t] for t in terms], dtype=index_type)
        tensors[f"weights.{n}"] = np.array([model.terms[t] for t in terms], dtype=np.float16)
        if model.dense is not None:
            tensors[f"dense.{n}"] = np.asarray(model.dense, dtype=np.float32)
        if model.gate is not None:
            tensors[f"gate.{n}"] = np.sort(np.asarray(model.gate, dtype=np.float32))
        if model.classifier is not None:
            tensors[f"classifier.{n}"] = np.asarray(model.classifier, dtype=np.float32)
        categories.append({"name": model.category, "terms": len(terms), "dense": model.dense is not None,
                           "gate": model.gate is not None, "classifier": model.classifier is not None,
                           "top_terms": model.top_terms(8)})
    tmp = directory / f".{WEIGHTS}.tmp"
    save_file(tensors, str(tmp))
    tmp.chmod(0o644)  # safetensors writes owner-only files; a shipped or shared fit must be readable by all
    os.replace(tmp, directory / WEIGHTS)
    manifest = {**learned.manifest, "format": FORMAT, "version": VERSION, "categories": categories}
    manifest["weights_sha256"] = hashlib.sha256((directory / WEIGHTS).read_bytes()).hexdigest()
    manifest["vocabulary"] = vocabulary
    (directory / MANIFEST).write_text(_dump_manifest(manifest))
    return directory


def _carry_classifier(learned: LearnedQueries, directory: Path) -> None:
    """A fit with a passage classifier loads only with the classifier's layers beside it: copy them from the
    directory the fit was loaded from (re-saving a loaded fit elsewhere, e.g. with a tuned embedder's probes)."""
    from clauseloop.models.tuned import is_tuned_dir

    if not learned.manifest.get("classifier") or is_tuned_dir(directory / CLASSIFIER_DIR):
        return
    sources = sorted({m.classifier_embedder for m in learned.models.values() if m.classifier_embedder})
    if not sources:
        raise LearnedQueriesError(f"this fit has a passage classifier whose layers were never saved; call "
                                  f"save_classifier({str(directory)!r}, tuned) before save_learned")
    shutil.copytree(sources[0], directory / CLASSIFIER_DIR, dirs_exist_ok=True)


def _dump_manifest(manifest: dict) -> str:
    """Indented JSON, one line per category and the vocabulary on one line: small, and readable in a diff."""
    head = {k: v for k, v in manifest.items() if k not in ("categories", "vocabulary")}
    text = json.dumps(head, indent=1, ensure_ascii=False)[:-2]
    rows = ",\n  ".join(json.dumps(entry, ensure_ascii=False) for entry in manifest["categories"])
    vocabulary = json.dumps(manifest["vocabulary"], ensure_ascii=False)
    return f'{text},\n "categories": [\n  {rows}\n ],\n "vocabulary": {vocabulary}\n}}\n'


def _read_manifest(directory: Path) -> dict:
    path = directory / MANIFEST
    if not path.is_file():
        raise LearnedQueriesError(f"{path} is missing: {directory} is not a learned-queries directory; "
                                  f"{_refit_hint(directory)}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise LearnedQueriesError(f"{path} is unreadable ({error}); {_refit_hint(directory)}") from error
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
        raise LearnedQueriesError(f"{path} is not a {FORMAT} v{VERSION} manifest; {_refit_hint(directory)}")
    return manifest


def load_learned(directory: str | Path) -> LearnedQueries:
    """Load a fitted directory, verified against its manifest (a changed or truncated file is refused)."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    manifest = _read_manifest(directory)
    weights = directory / WEIGHTS
    if not weights.is_file() or hashlib.sha256(weights.read_bytes()).hexdigest() != manifest.get("weights_sha256"):
        state = "is missing" if not weights.is_file() else "does not match its manifest (truncated or changed)"
        raise LearnedQueriesError(f"{weights} {state}; {_refit_hint(directory)}")
    tensors, vocabulary, models = load_file(str(weights)), manifest.get("vocabulary"), {}
    classifier_dir = _classifier_dir(directory, manifest)
    try:
        for n, entry in enumerate(manifest["categories"]):
            columns, values = tensors[f"terms.{n}"], tensors[f"weights.{n}"].astype(np.float64)
            if len(values) != len(columns) or len(columns) != entry["terms"]:
                raise ValueError(f"{entry['name']}: {entry['terms']} terms, {len(columns)} indices, {len(values)} "
                                 "weights")
            terms = {vocabulary[int(c)]: w for c, w in zip(columns.tolist(), values.tolist())}
            dense = tensors[f"dense.{n}"] if entry["dense"] else None
            gate = tensors[f"gate.{n}"] if entry.get("gate") else None
            classifier = tensors[f"classifier.{n}"] if entry.get("classifier") else None
            models[entry["name"].lower()] = CategoryModel(
                entry["name"], terms, dense, manifest.get("embedder"), gate, classifier,
                classifier_dir if classifier is not None else None)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise LearnedQueriesError(f"{directory}: manifest and weights disagree ({error}); "
                                  f"{_refit_hint(directory)}") from error
    if manifest.get("term_features") != TERM_FEATURES:
        logger.warning("%s was fitted on other passage features (%s, now %s): its term weights still rank, but "
                       "less well; %s", directory, manifest.get("term_features", "no section headings"),
                       TERM_FEATURES, _refit_hint(directory))
    return LearnedQueries(models, manifest)


def _classifier_dir(directory: Path, manifest: dict) -> str | None:
    """The fit's classifier directory, checked (None when the fit has no classifier)."""
    if not manifest.get("classifier"):
        return None
    from clauseloop.models.tuned import TunedEmbedderError, read_tuned_manifest

    try:
        read_tuned_manifest(directory / CLASSIFIER_DIR)
    except TunedEmbedderError as error:
        raise LearnedQueriesError(f"{directory} names a passage classifier, but {error}; restore "
                                  f"{directory / CLASSIFIER_DIR} or {_refit_hint(directory)}") from error
    return str((directory / CLASSIFIER_DIR).resolve())


_DEFAULT: dict[str, LearnedQueries | None] = {}


def default_learned() -> LearnedQueries | None:
    """The learned queries used by default: ``$CLAUSELOOP_LEARNED_QUERIES`` if set, else the shipped fit; None
    (hand-written queries only) when neither exists. Loaded once per process and directory."""
    directory = Path(os.environ.get(ENV_VAR) or SHIPPED_DIR)
    key = str(directory)
    if key not in _DEFAULT:
        if not (directory / MANIFEST).exists() and ENV_VAR not in os.environ:
            logger.info("no learned queries at %s; using the hand-written category queries", directory)
            _DEFAULT[key] = None
        else:
            _DEFAULT[key] = load_learned(directory)  # a broken directory that was asked for is an error
    return _DEFAULT[key]
