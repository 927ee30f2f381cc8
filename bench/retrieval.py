"""Retrieval benchmark: span recall on the dev split, build throughput, incremental rebuild cost.

    .venv/bin/python bench/retrieval.py [--data ../shared/cuad/cuad-460.json.gz] [--out bench/results/retrieval.json]
        [--skip-timing] [--learned DIR] [--fit-shipped] [--fit-classifier] [--tune-fusion] [--compare-tuned]

1. Recall: an index over the dev contracts (kept in bench/out/ and updated incrementally, so a rerun re-embeds
   nothing), searched per question within its own contract; dense, lexical and hybrid with the hand-written
   category queries, the naive baseline (dense, category name + description, no lead prior), and the learned
   category queries (fitted on the TRAIN split only) with ablations of their two parts.
   ``--fit-shipped`` first re-fits the packaged artifact (clauseloop/retrieval/learned/) on the train split,
   with the training passages' embeddings cached in bench/out/, and its passage classifier (~22 min);
   ``--fit-classifier`` re-trains only the classifier.
2. Throughput: on the 100 shortest contracts (to keep the run short on 2 CPU cores), a full index build vs a bare
   MiniLM ``encode`` of exactly the same passages, same batch size, in the same process. The build also reports
   its non-model overhead, which gives a ratio free of CPU contention that changes between the two timings.
3. Incremental: one of those 100 contracts is changed (a sentence appended) and the index rebuilt.

``--tune-fusion`` and ``--compare-tuned`` only score choices on 46 held-out TRAIN contracts (models fitted on the
other train contracts; dev untouched): the fusion settings, and the frozen vs the tuned embedder
(clauseloop/retrieval/tuning.py; ~30 min, most of it tuning and re-embedding on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import random
import shutil
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from common import write_results

from clauseloop.data import load_cuad, split_of
from clauseloop.models.tuned import save_tuned
from clauseloop.retrieval.chunking import chunk_contracts
from clauseloop.retrieval.classifier import fit_classifier, save_classifier
from clauseloop.retrieval.embedding import Embedder
from clauseloop.retrieval.evaluate import RecallReport, evaluate_index
from clauseloop.retrieval.fitting import FitConfig, fit_learned_queries
from clauseloop.retrieval.index import MODES, IndexConfig, PassageIndex
from clauseloop.retrieval.learned import CLASSIFIER_DIR, SHIPPED_DIR, load_learned, save_learned
from clauseloop.retrieval.queries import CategoryQueryBuilder, LearnedQueryBuilder, description_query
from clauseloop.retrieval.store import build_index_dir
from clauseloop.retrieval.tuning import TuneConfig, tune_learned_queries

ROOT = Path(__file__).resolve().parents[1]
KS = (1, 5, 10)
# Rows of the recall table: (key, label). Keys are those of report["recall"]["results"].
ROWS = (
    ("baseline_dense_description", "naive: dense, query = category name + description"),
    ("dense", "dense (MiniLM + faiss), hand-written category queries"),
    ("lexical", "lexical (BM25), hand-written category queries"),
    ("hybrid", "hybrid, hand-written category queries"),
    ("learned_terms_only", "learned term weights alone (no BM25, no embeddings)"),
    ("learned_classifier_only", "passage classifier alone"),
    ("learned_no_probe", "hybrid + learned term weights"),
    ("learned_no_classifier", "hybrid + learned term weights + dense probe (before the classifier)"),
    ("learned_no_terms", "hybrid + passage classifier"),
    ("learned", "**learned** (default: hybrid + term weights + passage classifier)"),
)


class CachedModel:
    """A SentenceTransformer stand-in that serves vectors from a text-keyed cache (safetensors + JSON keys) and
    encodes only texts it has not seen, so re-fitting the shipped artifact re-embeds nothing."""

    BLOCK = 4096

    def __init__(self, embedder: Embedder, path: Path):
        from safetensors.numpy import load_file

        self.embedder, self.path = embedder, path
        self.keys: dict[str, int] = {}
        self.vectors = np.zeros((0, 384), dtype=np.float32)
        if path.with_suffix(".json").exists():
            self.keys = json.loads(path.with_suffix(".json").read_text())
            self.vectors = load_file(str(path))["vectors"]

    def get_embedding_dimension(self) -> int:
        return self.vectors.shape[1]

    def encode(self, texts, **kwargs) -> np.ndarray:
        from safetensors.numpy import save_file

        keys = [hashlib.sha256(t.encode()).hexdigest() for t in texts]
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in self.keys}.items())
        # Saved block by block: embedding a whole train split takes ~40 min here, and an interrupted run resumes.
        for start in range(0, len(missing), self.BLOCK):
            block = missing[start:start + self.BLOCK]
            logging.info("embedding %d-%d of %d uncached texts", start, start + len(block), len(missing))
            fresh = self.embedder.encode([t for _, t in block], progress=True)
            self.keys.update({k: len(self.keys) + n for n, (k, _) in enumerate(block)})
            self.vectors = np.concatenate([self.vectors, fresh])
            save_file({"vectors": self.vectors}, str(self.path))
            self.path.with_suffix(".json").write_text(json.dumps(self.keys))
        return self.vectors[[self.keys[k] for k in keys]]


# The shipped fit (FitConfig's defaults: the probe sees every training passage, embedded once and cached text by
# text in bench/out/).
SHIPPED_FIT = FitConfig()
# Search-time settings tried on held-out train contracts: learned term weights, learned probe weight, and the
# overlap share above which a passage repeating a better-ranked one is skipped.
FUSION_GRID = [(lexical, dense, overlap) for lexical in (3.0, 5.0, 8.0) for dense in (2.0, 3.0, 5.0)
               for overlap in (0.4, 0.5, 0.6)]


def cached_embedder(embedder: Embedder, work: Path) -> Embedder:
    work.mkdir(parents=True, exist_ok=True)
    return Embedder(embedder.name, model=CachedModel(embedder, work / "train-embeddings.safetensors"))


def fit_shipped(data: str, embedder: Embedder, work: Path) -> None:
    """Re-fit the packaged learned queries on the TRAIN split (passage embeddings cached in ``work``)."""
    learned = fit_learned_queries(split_of(load_cuad(data), "train"), SHIPPED_FIT,
                                  embedder=cached_embedder(embedder, work), progress=True)
    shutil.rmtree(SHIPPED_DIR, ignore_errors=True)
    save_learned(learned, SHIPPED_DIR)
    logging.info("fitted %d categories into %s", len(learned), SHIPPED_DIR)


def fit_shipped_classifier(data: str) -> None:
    """Add the passage classifier to the packaged fit, trained on the TRAIN split (~22 min on 2 CPU cores)."""
    learned = load_learned(SHIPPED_DIR)
    tuned, learned = fit_classifier(split_of(load_cuad(data), "train"), learned, progress=True)
    save_classifier(SHIPPED_DIR, tuned)
    save_learned(learned, SHIPPED_DIR)
    logging.info("trained the passage classifier on %d passages into %s", tuned.manifest["training_passages"],
                 SHIPPED_DIR / CLASSIFIER_DIR)


def held_out_split(data: str, held_out: int = 46):
    """TRAIN split into (the contracts models are fitted on, ``held_out`` seeded contracts to score them on)."""
    train = split_of(load_cuad(data), "train")
    ids = sorted(train.contracts)
    held = set(random.Random(0).sample(ids, held_out))
    return train.subset([c for c in ids if c not in held]), train.subset(held)


def tune_fusion(data: str, embedder: Embedder, work: Path, held_out: int = 46) -> dict:
    """Recall of each FUSION_GRID setting on ``held_out`` TRAIN contracts, with models fitted without them.

    Dev is not touched: this is how the shipped fusion settings are chosen (the best recall@5 + recall@10).
    """
    fitting, evaluation = held_out_split(data, held_out)
    cached = cached_embedder(embedder, work)
    learned = fit_learned_queries(fitting, replace(SHIPPED_FIT, gate_folds=0), embedder=cached, progress=True)
    index = PassageIndex.build(evaluation.contracts.values(), IndexConfig(), embedder=cached)
    results, fusion = {}, index.config.fusion
    for lexical, dense, overlap in FUSION_GRID:
        setting = replace(fusion, learned_lexical_weight=lexical, learned_dense_weight=dense, max_overlap=overlap)
        report = learned_recall(index, evaluation.questions, learned, setting)
        key = f"{lexical:g}/{dense:g}/{overlap:g}"
        results[key] = _recalls(report)
        logging.info("learned weights %g / %g, max overlap %g: %s", lexical, dense, overlap, results[key])
    best = max(results, key=lambda key: results[key]["recall@5"] + results[key]["recall@10"])
    return {"held_out_train_contracts": held_out, "questions": len(evaluation.questions), "best": best,
            "results": results}


def compare_tuned(data: str, embedder: Embedder, work: Path, held_out: int = 46) -> dict:
    """The frozen MiniLM with linear probes vs its top layers tuned with the probes as the head (TuneConfig's
    defaults), both fitted without ``held_out`` TRAIN contracts and scored on them at the shipped fusion settings."""
    fitting, evaluation = held_out_split(data, held_out)
    cached = cached_embedder(embedder, work)  # loads the train-passage cache once for the fit and the frozen index
    frozen = fit_learned_queries(fitting, replace(SHIPPED_FIT, gate_folds=0), embedder=cached, progress=True)
    tuned_dir = work / "tuned-held"
    tuned, learned = tune_learned_queries(fitting, frozen, str(tuned_dir), TuneConfig(), base=embedder.name,
                                          progress=True)
    save_tuned(tuned_dir, tuned.layers, tuned.manifest)
    indexes = {
        "frozen": (PassageIndex.build(evaluation.contracts.values(), IndexConfig(), embedder=cached), frozen),
        "tuned": (PassageIndex.build(evaluation.contracts.values(), IndexConfig(embedder=str(tuned_dir)),
                                     embedder=Embedder(str(tuned_dir)), progress=True), learned),
    }
    results = {}
    for name, (index, fit) in indexes.items():
        fusion = index.config.fusion
        probe_only = replace(fusion, dense_weight=0.0, lexical_weight=0.0, learned_lexical_weight=0.0, lead_weight=0.0)
        for mode in ("dense", "hybrid"):
            report = evaluate_index(index, evaluation.questions, KS, builder=CategoryQueryBuilder(), mode=mode)
            results[f"{name} {mode}, hand-written queries"] = _recalls(report)
        results[f"{name} probe alone"] = _recalls(learned_recall(index, evaluation.questions, fit, probe_only))
        results[f"{name} learned (shipped fusion)"] = _recalls(learned_recall(index, evaluation.questions, fit, fusion))
        logging.info("%s: %s", name, {k: v for k, v in results.items() if k.startswith(name)})
    return {"held_out_train_contracts": held_out, "questions": len(evaluation.questions), "tuning": tuned.manifest,
            "results": results}


def _recalls(report: RecallReport) -> dict:
    return {f"recall@{k}": round(report.recall(k), 4) for k in KS}


def learned_recall(index, questions, learned, fusion) -> RecallReport:
    """Span recall of the learned queries in hybrid mode with ``fusion`` in place of the index's own settings."""
    original = index.config
    index.config = replace(original, fusion=fusion)
    try:
        return evaluate_index(index, questions, KS, builder=LearnedQueryBuilder(learned), mode="hybrid")
    finally:
        index.config = original


def learned_results(index, questions, learned) -> dict:
    """The learned queries in hybrid mode, and what each part adds (ablations by fusion weight)."""
    fusion = index.config.fusion
    # Without a classifier weight the probe takes its place (retrieval.index): "no classifier" is the ranking the
    # fit gave before it had one.
    learned_only = replace(fusion, dense_weight=0.0, lexical_weight=0.0, learned_dense_weight=0.0, lead_weight=0.0)
    variants = {
        "learned": fusion,
        "learned_no_classifier": replace(fusion, learned_classifier_weight=0.0),
        "learned_no_probe": replace(fusion, learned_dense_weight=0.0, learned_classifier_weight=0.0),
        "learned_no_terms": replace(fusion, learned_lexical_weight=0.0),
        "learned_terms_only": replace(learned_only, learned_classifier_weight=0.0),
        "learned_classifier_only": replace(learned_only, learned_lexical_weight=0.0),
    }
    results = {}
    for name, variant in variants.items():
        report = learned_recall(index, questions, learned, variant)
        results[name] = report.to_dict()
        logging.info("%s: %s", name, {k: round(report.recall(k), 3) for k in KS})
    return results


def provenance(learned, directory: Path) -> dict:
    """Where the evaluated learned queries come from (their manifest without the per-category term lists)."""
    shown = str(directory.relative_to(ROOT)) if directory.is_relative_to(ROOT) else str(directory)
    return {"directory": shown, **{k: v for k, v in learned.manifest.items() if k not in ("categories", "vocabulary")}}


def recall_section(data: str, split: str, embedder: Embedder, work: Path, learned_dir: Path) -> dict:
    dataset = split_of(load_cuad(data), split)
    started = time.perf_counter()
    index = build_index_dir(dataset.contracts.values(), work / f"index-{split}", embedder=embedder, progress=True)
    build_seconds = time.perf_counter() - started
    results = {}
    for mode in MODES:
        report = evaluate_index(index, dataset.questions, KS, builder=CategoryQueryBuilder(), mode=mode)
        results[mode] = report.to_dict()
        logging.info("%s: %s", mode, {k: round(report.recall(k), 3) for k in KS})
    baseline = evaluate_index(index, dataset.questions, KS, builder=description_query, mode="dense")
    results["baseline_dense_description"] = baseline.to_dict()
    learned = load_learned(learned_dir)
    results.update(learned_results(index, dataset.questions, learned))
    return {
        "split": split,
        "contracts": len(dataset.contracts),
        "questions": len(dataset.questions),
        "passages": len(index),
        "max_passage_chars": max(len(p.text) for p in index.passages),
        "config": index.config.to_dict(),
        "build_seconds": round(build_seconds, 1),
        "build": vars(index.build_stats),
        "learned_queries": provenance(learned, learned_dir),
        "results": results,
    }


def timing_section(data: str, embedder: Embedder, work: Path, n_contracts: int = 100) -> dict:
    dataset = load_cuad(data)
    contracts = sorted(dataset.contracts.values(), key=lambda c: (len(c.text), c.id))[:n_contracts]
    config = IndexConfig()
    texts = [p.text for p in chunk_contracts(contracts, config.chunking)]
    embedder.encode(texts[:64])  # warm up the model (first batches are slower), outside both timings

    started = time.perf_counter()
    embedder.encode(texts, progress=True)
    bare_seconds = time.perf_counter() - started

    directory = work / "index-timing"
    shutil.rmtree(directory, ignore_errors=True)
    started = time.perf_counter()
    full = build_index_dir(contracts, directory, config, embedder=embedder, progress=True)
    full_seconds = time.perf_counter() - started
    # On a shared machine the two timings see different CPU contention; the build's own split between the
    # model and everything else (chunking, hashing, writing) is measured under the same conditions.
    overhead = full_seconds - full.build_stats.encode_seconds

    changed = random.Random(0).randrange(len(contracts))
    edited = list(contracts)
    edited[changed] = replace(contracts[changed], text=contracts[changed].text + "\n\nThis sentence was added.")
    before = embedder.texts_encoded
    started = time.perf_counter()
    incremental = build_index_dir(edited, directory, config, embedder=embedder)
    incremental_seconds = time.perf_counter() - started
    return {
        "contracts": len(contracts),
        "characters": sum(len(c.text) for c in contracts),
        "passages": len(texts),
        "batch_size": embedder.batch_size,
        "bare_encode_seconds": round(bare_seconds, 2),
        "full_build_seconds": round(full_seconds, 2),
        "build_throughput_vs_bare_encode": round(bare_seconds / full_seconds, 3),
        "full_build_encode_seconds": round(full.build_stats.encode_seconds, 2),
        "build_overhead_seconds": round(overhead, 2),
        "build_throughput_vs_bare_encode_same_conditions": round(bare_seconds / (bare_seconds + overhead), 3),
        "incremental": {
            "changed_contract": contracts[changed].id,
            "texts_embedded": embedder.texts_encoded - before,
            "seconds": round(incremental_seconds, 2),
            "share_of_full_build": round(incremental_seconds / full_seconds, 4),
            "stats": vars(incremental.build_stats),
        },
    }


def recall_table(results: dict, header: str, best: str | None = None) -> list[str]:
    """Markdown rows of recall@1/5/10 per named ranking (``best`` in bold)."""
    lines = [f"| {header} | @1 | @5 | @10 |", "| --- | --- | --- | --- |"]
    for name, row in results.items():
        label = f"**{name}**" if name == best else name
        lines.append(f"| {label} | " + " | ".join(f"{row[f'recall@{k}']:.3f}" for k in KS) + " |")
    return lines


def fusion_markdown(tuning: dict) -> str:
    lines = [f"# Fusion settings on {tuning['held_out_train_contracts']} held-out train contracts "
             f"({tuning['questions']} questions); best recall@5 + @10 in bold", ""]
    lines += recall_table(tuning["results"], "term weights / probe / max overlap", tuning["best"])
    return "\n".join(lines) + "\n"


def tuned_markdown(comparison: dict) -> str:
    lines = [f"# Frozen vs tuned MiniLM on {comparison['held_out_train_contracts']} held-out train contracts "
             f"({comparison['questions']} questions)", "",
             f"Tuning: {json.dumps(comparison['tuning']['tune'])}, {comparison['tuning']['training_passages']} "
             f"training passages, {comparison['tuning']['steps']} steps.", ""]
    lines += recall_table(comparison["results"], "embedder, ranking")
    return "\n".join(lines) + "\n"


def markdown(report: dict) -> str:
    """The results as Markdown: overall recall table, per-category table, and the timing numbers."""
    recall, results = report["recall"], report["recall"]["results"]
    lines = [f"# Retrieval benchmark ({recall['split']} split: {recall['contracts']} contracts, "
             f"{recall['questions']} questions, {results['hybrid']['spans']} gold spans)", "",
             "| retrieval (passages ≤ 600 chars) | @1 | @5 | @10 |", "| --- | --- | --- | --- |"]
    for key, label in ROWS:
        if key in results:
            lines.append(f"| {label} | " + " | ".join(f"{results[key][f'recall@{k}']:.3f}" for k in KS) + " |")
    lines += ["", "Per category, recall@10 (hand-written hybrid → learned) and recall@5 of learned:", "",
              "| category | spans | hybrid @10 | learned @10 | learned @5 |", "| --- | --- | --- | --- | --- |"]
    for name, row in results["learned"]["per_category"].items():
        before = results["hybrid"]["per_category"][name]["recall@10"]
        lines.append(f"| {name} | {row['spans']} | {before:.2f} | {row['recall@10']:.2f} | {row['recall@5']:.2f} |")
    timing = report.get("timing")
    if timing:
        lines += ["", f"Build cost ({timing['contracts']} shortest contracts, {timing['passages']} passages):", "",
                  f"- bare encode {timing['bare_encode_seconds']} s, full build {timing['full_build_seconds']} s; "
                  f"throughput vs bare encode {timing['build_throughput_vs_bare_encode']} raw, "
                  f"{timing['build_throughput_vs_bare_encode_same_conditions']} same conditions (target ≥ 0.9)",
                  f"- incremental rebuild after changing 1 contract: {timing['incremental']['seconds']} s = "
                  f"{100 * timing['incremental']['share_of_full_build']:.1f} % of the full build (target ≤ 5 %)"]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "cuad" / "cuad-460.json.gz"))
    parser.add_argument("--split", default="dev")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "retrieval.json"))
    parser.add_argument("--work", default=str(ROOT / "bench" / "out" / "retrieval"))
    parser.add_argument("--skip-timing", action="store_true",
                        help="Only the recall section (the previous timing numbers in --out are kept).")
    parser.add_argument("--learned", default=str(SHIPPED_DIR), help="Learned-queries directory to evaluate.")
    parser.add_argument("--fit-shipped", action="store_true", help="Re-fit the packaged artifact on train first.")
    parser.add_argument("--fit-classifier", action="store_true",
                        help="Only (re-)train the packaged fit's passage classifier on train first.")
    parser.add_argument("--tune-fusion", action="store_true",
                        help="Only score the fusion settings (learned weights, max overlap) on held-out train "
                             "contracts (-> bench/results/retrieval-fusion.json).")
    parser.add_argument("--compare-tuned", action="store_true",
                        help="Only compare the frozen and the tuned embedder on held-out train contracts "
                             "(-> bench/results/retrieval-tuned.json).")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work, out = Path(args.work), Path(args.out)
    embedder = Embedder()
    if args.compare_tuned:
        comparison = compare_tuned(args.data, embedder, work)
        write_results(out.with_name("retrieval-tuned.json"), comparison, tuned_markdown(comparison))
        return
    if args.tune_fusion:
        tuning = tune_fusion(args.data, embedder, work)
        write_results(out.with_name("retrieval-fusion.json"), tuning, fusion_markdown(tuning))
        return
    if args.fit_shipped:
        fit_shipped(args.data, embedder, work)
    if args.fit_shipped or args.fit_classifier:
        fit_shipped_classifier(args.data)
    previous = json.loads(out.read_text()) if out.exists() else {}
    report = {
        "benchmark": "retrieval",
        "data": Path(args.data).name,
        "machine": {"cpus": __import__("os").cpu_count(), "platform": platform.platform()},
        "recall": recall_section(args.data, args.split, embedder, work, Path(args.learned).resolve()),
    }
    if not args.skip_timing:
        report["timing"] = timing_section(args.data, embedder, work)
    elif "timing" in previous:
        report["timing"] = previous["timing"]  # measured in an earlier run; kept, not re-measured
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(report))
    results = report["recall"]["results"]
    summary = {mode: {f"@{k}": round(r[f"recall@{k}"], 3) for k in KS} for mode, r in results.items()}
    print(json.dumps({"recall": summary, "timing": report.get("timing")}, indent=2))


if __name__ == "__main__":
    main()
