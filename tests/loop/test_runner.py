"""Fingerprinted stages: unchanged ones skip, changed ones re-run, a killed one runs again, a second loop is locked."""

from __future__ import annotations

import pytest

from clauseloop.loop.runner import LoopLocked, StageRunner, directory_lock


def counting_stage(calls: list):
    def stage(directory):
        calls.append(directory.name)
        (directory).mkdir(parents=True, exist_ok=True)
        return {"calls": len(calls)}
    return stage


def test_an_unchanged_stage_is_skipped_across_runs_and_a_changed_one_runs_in_its_own_directory(tmp_path):
    calls: list = []
    first = StageRunner(tmp_path).run("rows", {"contracts": {"a": "1"}}, counting_stage(calls))
    again = StageRunner(tmp_path).run("rows", {"contracts": {"a": "1"}}, counting_stage(calls))
    changed = StageRunner(tmp_path).run("rows", {"contracts": {"a": "2"}}, counting_stage(calls))
    assert (first.status, again.status, changed.status) == ("ran", "skipped", "ran")
    assert again.outputs == {"calls": 1} and again.reason == "unchanged"
    assert len(calls) == 2 and calls[0] == first.fingerprint and calls[1] == changed.fingerprint != calls[0]


def test_a_stage_killed_half_way_runs_again_and_the_stages_before_it_do_not(tmp_path):
    calls: list = []

    def killed(directory):
        raise KeyboardInterrupt

    runner = StageRunner(tmp_path)
    runner.run("data", {"x": 1}, counting_stage(calls))
    with pytest.raises(KeyboardInterrupt):
        runner.run("sft", {"x": 1}, killed)
    resumed = StageRunner(tmp_path)
    assert resumed.run("data", {"x": 1}, counting_stage(calls)).status == "skipped"
    assert resumed.run("sft", {"x": 1}, counting_stage(calls)).status == "ran"
    assert len(calls) == 2 and resumed.outputs("sft") == {"calls": 2}


def test_a_second_loop_on_the_same_directory_is_refused_and_the_lock_is_released_after(tmp_path):
    with directory_lock(tmp_path):
        with pytest.raises(LoopLocked, match="another `clauseloop loop` is running"):
            with directory_lock(tmp_path):
                pass
    with directory_lock(tmp_path):  # released when the first loop ended
        pass


def test_a_corrupted_state_file_is_refused_with_the_fix(tmp_path):
    (tmp_path / "state.json").write_text("{not json")
    with pytest.raises(RuntimeError, match="delete it to re-run every stage"):
        StageRunner(tmp_path)
