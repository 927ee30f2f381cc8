"""`clauseloop index ...`: build, search and evaluate passage indexes over contracts."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from clauseloop.cli.common import DATA_HELP, console, fail, load_data_or_fail, print_json
from clauseloop.retrieval.tuning import TuneConfig

app = typer.Typer(help="Passage indexes over contracts: build, search, evaluate span recall.", no_args_is_help=True)

DEFAULT_DIR = "runs/index"
MODE_HELP = "dense (MiniLM + faiss), lexical (BM25) or hybrid (both, fused by reciprocal rank)."
QUERIES_HELP = (
    "Learned category queries: a directory from `clauseloop index fit-queries`, 'none' for the hand-written "
    "queries only. Default: $CLAUSELOOP_LEARNED_QUERIES, else the fit shipped with the package."
)


def _builder(queries: Optional[str]):
    from clauseloop.retrieval.learned import LearnedQueriesError
    from clauseloop.retrieval.queries import CategoryQueryBuilder, LearnedQueryBuilder

    if queries and queries.lower() == "none":
        return CategoryQueryBuilder()
    try:
        return LearnedQueryBuilder(queries)
    except LearnedQueriesError as error:
        fail(str(error))


def _config(mode: str, max_chars: int, overlap: int, embedder: str):
    from clauseloop.retrieval.chunking import ChunkConfig
    from clauseloop.retrieval.index import IndexConfig

    local = Path(embedder).expanduser()
    if local.is_dir():  # one spelling per directory: learned probes name the embedder they are valid for
        embedder = str(local.resolve())
    try:
        return IndexConfig(embedder=embedder, chunking=ChunkConfig(max_chars, overlap), mode=mode)
    except ValueError as error:
        fail(str(error))


def _load(directory: str):
    from clauseloop.retrieval.store import IndexStoreError, load_index

    try:
        return load_index(directory)
    except IndexStoreError as error:
        fail(str(error))


@app.command()
def build(
    data: Optional[str] = typer.Argument(None, help=DATA_HELP),
    out: str = typer.Option(DEFAULT_DIR, "--out", help="Index directory (updated incrementally if it exists)."),
    mode: str = typer.Option("hybrid", help="Default search mode stored in the index: " + MODE_HELP),
    split: str = typer.Option("all", help="Index only the contracts of one split: train, dev, test or all."),
    max_chars: int = typer.Option(600, help="Longest passage, in characters."),
    overlap: int = typer.Option(300, help="Characters shared by neighbouring passages."),
    embedder: str = typer.Option("minilm-l6", help="Sentence embedder: a named model or a local directory."),
) -> None:
    """Chunk and embed contracts; only new or changed contracts are re-embedded."""
    from clauseloop.data import split_of
    from clauseloop.retrieval.store import IndexStoreError, build_index_dir

    config = _config(mode, max_chars, overlap, embedder)
    try:
        dataset = split_of(load_data_or_fail(data), split)
        index = build_index_dir(dataset.contracts.values(), out, config, progress=True)
    except (ValueError, IndexStoreError) as error:
        fail(str(error))
    stats = index.build_stats
    console.print(
        f"[bold]{out}[/]: {stats.contracts} contracts, {stats.passages} passages "
        f"(embedded {stats.embedded_contracts} contracts / {stats.embedded_passages} passages, reused "
        f"{stats.reused_contracts}, removed {stats.removed_contracts}) in {stats.seconds:.1f}s"
    )


@app.command()
def search(
    directory: str = typer.Argument(..., help="An index directory from `clauseloop index build`."),
    query: str = typer.Argument(..., help="Free text, or a CUAD category name (its hint terms + learned model)."),
    contract: Optional[str] = typer.Option(None, "--contract", help="Search only this contract (its id/title)."),
    k: int = typer.Option(5, "--k", min=1, help="Passages to return."),
    mode: Optional[str] = typer.Option(None, help=MODE_HELP + " Default: the index's mode."),
    queries: Optional[str] = typer.Option(None, "--queries", help=QUERIES_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """The top-k passages for a query, with contract id, character offsets and score."""
    from clauseloop.data.categories import get_category

    index = _load(directory)
    try:
        get_category(query)
        search_query = _builder(queries)(query)
    except KeyError:
        search_query = query
    try:
        hits = index.search(search_query, k, contract_id=contract, mode=mode)
    except (KeyError, ValueError) as error:
        fail(str(error).strip("'\""))
    if as_json:
        print_json([hit.to_dict() for hit in hits])
        return
    for rank, hit in enumerate(hits, 1):
        p = hit.passage
        console.print(f"[bold]{rank}.[/] {p.contract_id} [{p.start}:{p.end}] score {hit.score:.4f}", highlight=False)
        console.print(f"   {p.text}", highlight=False)


@app.command("eval")
def evaluate(
    directory: str = typer.Argument(..., help="An index directory built over the same data."),
    data: Optional[str] = typer.Argument(None, help=DATA_HELP),
    split: str = typer.Option("dev", help="Questions of this split: dev, test, train or all."),
    ks: str = typer.Option("1,5,10", "--k", help="Comma-separated k values."),
    mode: Optional[str] = typer.Option(None, help=MODE_HELP + " Default: the index's mode."),
    queries: Optional[str] = typer.Option(None, "--queries", help=QUERIES_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Span recall@k: share of gold spans ≥ 50 % covered by the top-k passages of their own contract."""
    from clauseloop.data import split_of
    from clauseloop.retrieval.evaluate import evaluate_index

    try:
        k_values = tuple(int(part) for part in ks.split(",") if part.strip())
        questions = split_of(load_data_or_fail(data), split).questions
        builder = _builder(queries)
        report = evaluate_index(_load(directory), questions, k_values, builder=builder, mode=mode,
                                progress=not as_json)
    except ValueError as error:
        hint = " (--k takes comma-separated positive integers, e.g. 1,5,10)" if "int" in str(error) else ""
        fail(f"{error}{hint}")
    result = report.to_dict()
    if as_json:
        print_json(result)
        return
    overall = "  ".join(f"recall@{k} {report.recall(k):.3f}" for k in report.ks)
    console.print(f"[bold]{split}[/]: {report.questions} answerable questions, {report.spans} gold spans  {overall}")
    table = Table("category", "spans", *[f"@{k}" for k in report.ks])
    for name, row in result["per_category"].items():
        table.add_row(name, str(row["spans"]), *[f"{row[f'recall@{k}']:.2f}" for k in report.ks])
    console.print(table)


@app.command("fit-queries")
def fit_queries(
    data: Optional[str] = typer.Argument(None, help=DATA_HELP),
    out: str = typer.Option("runs/learned-queries", "--out", help="Directory for manifest.json + weights."),
    split: str = typer.Option("train", help="Fit on this split only (train; evaluate on dev)."),
    dense: bool = typer.Option(True, "--dense/--no-dense", help="Also fit embedding probes (embeds the passages)."),
    sample_contracts: Optional[int] = typer.Option(
        None, min=1, help="Embed only N sampled contracts (+ some positives) for the probes; default: every passage."
    ),
    gate_folds: int = typer.Option(4, min=0, help="Folds for the presence gate's cross-fitted scores (0: no gate)."),
    classifier: bool = typer.Option(
        False, "--classifier", help="Also fine-tune MiniLM as a passage classifier (~22 min for CUAD's train split "
        "on 2 CPU cores; +1 point of recall on held-out contracts)."
    ),
) -> None:
    """Learn per-category term weights, embedding probes and presence-gate scores from gold clauses; use them with
    --queries OUT or CLAUSELOOP_LEARNED_QUERIES=OUT."""
    from clauseloop.data import split_of
    from clauseloop.retrieval.classifier import fit_classifier, save_classifier
    from clauseloop.retrieval.fitting import FitConfig, fit_learned_queries
    from clauseloop.retrieval.learned import save_learned

    try:
        config = FitConfig(dense=dense, sample_contracts=sample_contracts, gate_folds=gate_folds)
        dataset = split_of(load_data_or_fail(data), split)
        learned = fit_learned_queries(dataset, config, progress=True)
        if classifier:
            tuned, learned = fit_classifier(dataset, learned, progress=True)
            save_classifier(out, tuned)  # before the manifest that names it
    except ValueError as error:
        fail(str(error))
    save_learned(learned, out)
    probes = sum(model.dense is not None for model in learned.models.values())
    console.print(
        f"[bold]{out}[/]: {len(learned)} categories ({probes} with a dense probe"
        f"{', a passage classifier' if classifier else ''}) fitted on "
        f"{len(dataset.contracts)} {split} contracts; search with `--queries {out}` or "
        f"CLAUSELOOP_LEARNED_QUERIES={out}"
    )


@app.command("tune-embedder")
def tune_embedder(
    data: Optional[str] = typer.Argument(None, help=DATA_HELP),
    out: str = typer.Option("runs/tuned", "--out", help="Writes OUT/embedder (tuned layers) and OUT/queries."),
    split: str = typer.Option("train", help="Tune on this split only (train; evaluate on dev)."),
    queries: Optional[str] = typer.Option(None, help=QUERIES_HELP + " Its terms are kept; its probes start the head."),
    layers: int = typer.Option(TuneConfig.layers, min=1, help="Top transformer layers to train."),
    epochs: float = typer.Option(TuneConfig.epochs, min=0.01, help="Passes over the training passages."),
    max_passages: Optional[int] = typer.Option(None, min=1, help="Train on at most N passages (quick runs)."),
) -> None:
    """Fine-tune the embedder's top layers on gold clauses together with the category probes; search with
    `index build --embedder OUT/embedder` and `--queries OUT/queries`."""
    from clauseloop.data import split_of
    from clauseloop.models.tuned import save_tuned
    from clauseloop.retrieval.learned import save_learned
    from clauseloop.retrieval.tuning import tune_learned_queries

    learned = getattr(_builder(queries), "learned", None)
    if learned is None:
        fail("tuning starts from learned queries (their categories and terms); give --queries DIR, not 'none'")
    embedder_dir = Path(out, "embedder").resolve()
    try:
        config = TuneConfig(layers=layers, epochs=epochs, max_passages=max_passages)
        dataset = split_of(load_data_or_fail(data), split)
        tuned, retuned = tune_learned_queries(dataset, learned, str(embedder_dir), config, progress=True)
    except ValueError as error:
        fail(str(error))
    save_tuned(embedder_dir, tuned.layers, tuned.manifest)
    save_learned(retuned, Path(out, "queries"))
    console.print(f"[bold]{out}[/]: {config.layers} layers tuned on {tuned.manifest['training_passages']} passages "
                  f"of {len(dataset.contracts)} {split} contracts; use `clauseloop index build DATA --embedder "
                  f"{embedder_dir}` and `--queries {Path(out, 'queries')}`")
