"""`clauseloop evaluate` and `clauseloop ask`: run the QA program over a split, or on one contract."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from clauseloop.cli.common import DATA_HELP, console, err_console, fail, load_data_or_fail, print_json, user_errors

CONTEXT_CHARS = 160  # text shown around a span in `ask`
PROGRAM_HELP = "zero-shot, retrieval, a directory from `clauseloop optimize`, or a saved program JSON."
GATE_HELP = "Answer 'no clause' without the LM where the learned presence score is below its threshold."


def evaluate(
    program: str = typer.Option("zero-shot", "--program", help=PROGRAM_HELP),
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP),
    split: str = typer.Option("dev", help="dev, test, train or all."),
    limit: Optional[int] = typer.Option(None, min=1, help="At most N questions, stratified by category."),
    lm: str = typer.Option("student", help="The answering LM: a role (student/teacher/judge) or a model string."),
    judge: Optional[str] = typer.Option(None, help="Also score with an LLM judge (a role or model string)."),
    export_nbest: Optional[Path] = typer.Option(None, help="Write official nbest_predictions JSON here."),
    out: Path = typer.Option(Path("runs/eval"), help="Report directory (report.json, report.md, pr_curve.png)."),
    threads: int = typer.Option(16, min=1, help="Concurrent requests (the local engine batches them)."),
    gate: bool = typer.Option(True, help=GATE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print the report JSON."),
) -> None:
    """Score a program with CUAD's official span metric (AUPR, P@80R, F1 …) and write a report."""
    from clauseloop.program.evaluation import EvalConfig
    from clauseloop.program.evaluation import evaluate as run_evaluation

    config = EvalConfig(
        program=program, data=data, split=split, limit=limit, lm=lm, judge=judge,
        export_nbest=str(export_nbest) if export_nbest else None, out_dir=str(out), threads=threads,
        gate=gate, progress=not as_json,
    )
    with user_errors():
        report = run_evaluation(config)
    if as_json:
        print_json(report)
        return
    overall = report["overall"]
    table = Table("metric", "value", "95 % CI")
    for key in ("aupr", "prec_at_80_recall", "prec_at_90_recall", "f1", "no_answer_accuracy", "laziness"):
        low, high = overall["ci"].get(key, [None, None])
        interval = f"[{low:.3f}, {high:.3f}]" if low is not None and high is not None else "–"
        value = overall.get(key)
        table.add_row(key, f"{value:.3f}" if value is not None else "–", interval)
    console.print(table)
    console.print(
        f"{report['data']['questions']} questions, {report['questions_per_second']} q/s, hallucination rate "
        f"{report['hallucination_rate']:.3f}; report: {report['files']['markdown']}"
    )


def find_contract(contract: str, data: Optional[str]):
    """A contract from a text file, or by id / unique title fragment from a dataset (the demo by default)."""
    from clauseloop.data import Contract
    from clauseloop.data.text import NotATextContract, read_contract_file

    path = Path(contract)
    if path.is_file():
        try:
            return Contract(id=path.stem, title=path.stem, text=read_contract_file(path))
        except NotATextContract as error:
            fail(str(error))
    contracts = load_data_or_fail(data).contracts
    if contract in contracts:
        return contracts[contract]
    matches = [c for c in contracts.values() if contract.lower() in c.title.lower()]
    if len(matches) == 1:
        return matches[0]
    known = "\n  ".join(sorted(contracts)[:10])
    fail(f"{'several' if matches else 'no'} contracts match {contract!r}; give a .txt file or one of:\n  {known}")


def highlighted(text: str, start: int, end: int) -> Text:
    before = text[max(0, start - CONTEXT_CHARS) : start]
    after = text[end : end + CONTEXT_CHARS]
    shown = Text("…" + " ".join(before.split()) + " ", style="dim")
    shown.append(" ".join(text[start:end].split()), style="bold yellow")
    shown.append(" " + " ".join(after.split()) + "…", style="dim")
    return shown


def ask(
    contract: str = typer.Argument(..., help="A .txt contract, or a contract id / title fragment from --data."),
    query: str = typer.Argument(..., help="A CUAD category (e.g. 'Governing Law') or a free question."),
    data: Optional[str] = typer.Option(None, "--data", help=DATA_HELP),
    program: str = typer.Option("zero-shot", "--program", help=PROGRAM_HELP),
    lm: str = typer.Option("student", help="The answering LM: a role or a model string."),
    gate: bool = typer.Option(True, help=GATE_HELP),
    as_json: bool = typer.Option(False, "--json", help="Print spans as JSON."),
) -> None:
    """Ask one contract about a category or a question; prints the clause spans in their context."""
    import dspy

    from clauseloop.data import CATEGORY_NAMES, canonical_name
    from clauseloop.data import CuadDataset
    from clauseloop.engine.roles import make_lm
    from clauseloop.program.evaluation import build_program

    target = find_contract(contract, data)
    category = canonical_name(query)
    inputs = {"category": category} if category in CATEGORY_NAMES else {"question": query}
    with user_errors():  # a damaged saved program says how to rebuild it; a missing model, how to get it
        qa = build_program(program, CuadDataset(contracts={target.id: target}, questions=[]), gate=gate)
        answering = make_lm(lm) if program != "retrieval" else None
    with err_console.status(f"asking {target.title}"):
        with dspy.context(lm=answering):
            prediction = qa(contract=target, **inputs)
    if as_json:
        print_json({"contract": target.id, **inputs, "spans": [s.to_dict() for s in prediction.spans],
                    "dropped": getattr(prediction, "dropped", 0), "gated": getattr(prediction, "gated", False)})
        return
    if getattr(prediction, "gated", False):
        console.print(f"No clause about {query!r} in {target.title}: nothing in it scores like one, so the LM was "
                      "not asked (--no-gate asks it anyway).")
    elif not prediction.spans:
        console.print(f"No clause about {query!r} found in {target.title}.")
    for number, span in enumerate(prediction.spans, start=1):
        title = f"{number}. chars {span.start}–{span.end}, confidence {span.confidence:.2f}"
        console.print(Panel(highlighted(target.text, span.start, span.end), title=title, expand=False))
    if getattr(prediction, "dropped", 0):
        err_console.print(f"[yellow]{prediction.dropped} quoted text(s) not found in the contract were dropped[/]")
