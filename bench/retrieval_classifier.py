"""The passage classifier on held-out TRAIN contracts: alone, fused, and the fusion weight it ships with.

    .venv/bin/python bench/retrieval_classifier.py [--data ../shared/cuad/cuad-460.json.gz]
        [--out bench/results/retrieval-classifier.json]

The same 46 held-out train contracts as ``bench/retrieval.py --tune-fusion``: term weights and probes
(``FitConfig`` defaults, no gate) and the classifier (``CLASSIFIER_TUNE``) are fitted on the other 322 train
contracts (~30 min on 2 CPU cores, most of it the classifier), then every ranking is scored on the 46. Dev is not
touched: the shipped ``learned_classifier_weight`` is the best recall@5 + recall@10 of the grid below.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import replace
from pathlib import Path

from common import write_results
from retrieval import (
    ROOT,
    SHIPPED_FIT,
    _recalls,
    cached_embedder,
    held_out_split,
    learned_recall,
    recall_table,
)

from clauseloop.retrieval.classifier import fit_classifier, save_classifier
from clauseloop.retrieval.embedding import Embedder
from clauseloop.retrieval.fitting import fit_learned_queries
from clauseloop.retrieval.index import IndexConfig, PassageIndex
from clauseloop.retrieval.learned import load_learned, save_learned

# (classifier weight, learned term weight) with everything else as shipped; the probe is not used with a classifier.
GRID = [(classifier, terms) for classifier in (3.0, 5.0, 8.0) for terms in (3.0, 5.0)]


def compare(data: str, embedder: Embedder, work: Path, held_out: int = 46) -> dict:
    fitting, evaluation = held_out_split(data, held_out)
    cached = cached_embedder(embedder, work)
    frozen = fit_learned_queries(fitting, replace(SHIPPED_FIT, gate_folds=0), embedder=cached, progress=True)
    tuned, learned = fit_classifier(fitting, frozen, progress=True)
    directory = work / "classifier-held"
    save_classifier(directory, tuned)
    save_learned(learned, directory)
    learned = load_learned(directory)
    index = PassageIndex.build(evaluation.contracts.values(), IndexConfig(), embedder=cached)
    fusion, questions = index.config.fusion, evaluation.questions
    alone = replace(fusion, dense_weight=0.0, lexical_weight=0.0, lead_weight=0.0)
    results = {
        "term weights alone": _recalls(learned_recall(index, questions, frozen, replace(
            alone, learned_dense_weight=0.0))),
        "classifier alone": _recalls(learned_recall(index, questions, learned, replace(
            alone, learned_lexical_weight=0.0))),
        "without the classifier (shipped fusion)": _recalls(learned_recall(index, questions, frozen, fusion)),
    }
    grid = []
    for classifier, terms in GRID:
        key = f"classifier {classifier:g} / terms {terms:g}"
        setting = replace(fusion, learned_classifier_weight=classifier, learned_lexical_weight=terms)
        results[key] = _recalls(learned_recall(index, questions, learned, setting))
        grid.append(key)
        logging.info("%s: %s", key, results[key])
    best = max(grid, key=lambda key: results[key]["recall@5"] + results[key]["recall@10"])
    return {"held_out_train_contracts": held_out, "questions": len(questions), "classifier": tuned.manifest,
            "best": best, "results": results}


def markdown(comparison: dict) -> str:
    tune = comparison["classifier"]
    lines = [f"# Passage classifier on {comparison['held_out_train_contracts']} held-out train contracts "
             f"({comparison['questions']} questions); best recall@5 + @10 of the grid in bold", "",
             f"Trained on {tune['training_passages']} passages of the other train contracts, {tune['steps']} steps "
             f"({tune['tune']['layers']} layers, lr {tune['tune']['lr']:g}, no anchor).", ""]
    lines += recall_table(comparison["results"], "ranking", comparison["best"])
    return "\n".join(lines) + "\n"


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT.parent / "shared" / "cuad" / "cuad-460.json.gz"))
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "retrieval-classifier.json"))
    args = parser.parse_args()
    comparison = compare(args.data, Embedder(), ROOT / "bench" / "out" / "retrieval")
    write_results(Path(args.out), comparison, markdown(comparison))


if __name__ == "__main__":
    main()
