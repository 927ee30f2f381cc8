"""What users touch on the command line: unwrapped ids and paths, clean user errors, no library noise."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings

import pytest
from typer.testing import CliRunner

from clauseloop.cli import app
from clauseloop.cli.quiet import quiet_libraries
from clauseloop.data import demo_path

runner = CliRunner()
LONG_DIR = "a-directory-with-a-rather-long-name/and-another-one-below-it/and-a-third-to-pass-eighty-columns"


def one_line_holds(output: str, text: str) -> bool:
    return any(text in line for line in output.splitlines())


def test_a_question_id_in_an_error_is_not_wrapped(tmp_path):
    document = json.loads(demo_path().read_text(encoding="utf-8"))
    question = next(q for q in document["data"][0]["paragraphs"][0]["qas"] if q["answers"])
    question["answers"][0]["answer_start"] += 3
    shifted = tmp_path / LONG_DIR / "shifted.json"
    shifted.parent.mkdir(parents=True)
    shifted.write_text(json.dumps(document), encoding="utf-8")
    result = runner.invoke(app, ["data", "stats", str(shifted)])
    assert result.exit_code == 2 and len(question["id"]) + len(str(shifted)) > 80
    assert one_line_holds(result.output, f"question {question['id']!r}"), result.output
    assert one_line_holds(result.output, str(shifted)), result.output


def test_a_missing_feedback_db_path_is_not_wrapped(tmp_path):
    missing = tmp_path / LONG_DIR / "feedback.db"
    result = runner.invoke(app, ["feedback", "stats", "--db", str(missing)])
    assert result.exit_code == 2 and len(str(missing)) > 80
    assert one_line_holds(result.output, f"no feedback database at {missing};"), result.output


@pytest.mark.parametrize(
    ("content", "problem"),
    [(b"", "it is empty"), (b"   \n\n", "it is empty"), (b"MZ\x90\x00\x03\x00\xff\xfe" * 64, "binary"),
     ("Vertrag über Lieferung".encode("latin-1"), "not UTF-8"), (b"%PDF-1.7\n%\xe2\xe3", "PDF")],
    ids=["empty", "blank", "binary", "latin-1", "pdf"],
)
def test_ask_refuses_a_file_that_is_not_a_text_contract(tmp_path, content, problem):
    contract = tmp_path / "contract.txt"
    contract.write_bytes(content)
    result = runner.invoke(app, ["ask", str(contract), "Governing Law", "--lm", "base"])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "UnicodeDecodeError" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: not a text contract:") and problem in lines[0]
    assert str(contract) in lines[0]


def test_quiet_libraries_hides_the_noise_and_verbose_brings_it_back():
    truncation = logging.getLogger("dspy.clients.lm")
    try:
        quiet_libraries(verbose=False)
        assert not truncation.isEnabledFor(logging.WARNING)
        assert os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] == "1"
        with warnings.catch_warnings(record=True) as caught:
            warnings.warn("`past_key_values` is deprecated for `LlamaForCausalLM.forward`", FutureWarning)
        assert caught == []
    finally:
        quiet_libraries(verbose=True)
    assert truncation.isEnabledFor(logging.WARNING)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        warnings.warn("`past_key_values` is deprecated for `LlamaForCausalLM.forward`", FutureWarning)
    assert len(caught) == 1


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for name in ("HF_HUB_DISABLE_PROGRESS_BARS", "TRANSFORMERS_VERBOSITY"):
        env.pop(name, None)
    return subprocess.run([sys.executable, "-m", "clauseloop", *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)


@pytest.mark.real_model
def test_a_real_model_command_prints_no_library_noise(smollm2_dir):
    quiet = run_cli("models", "generate", "base", "Hi", "--max-new-tokens", "2")
    assert quiet.returncode == 0 and quiet.stdout.strip(), quiet.stderr
    for noise in ("Loading weights", "Writing model shards", "past_key_values", "LM response was truncated",
                  "Warning"):
        assert noise not in quiet.stderr, quiet.stderr
    verbose = run_cli("--verbose", "models", "generate", "base", "Hi", "--max-new-tokens", "2")
    assert verbose.returncode == 0 and "Loading weights" in verbose.stderr  # the check above can fail
