"""The main job and the continuous loop: fingerprinted stages, incremental re-runs, the promotion gate."""

from clauseloop.loop.run import RunConfig, run_main_job

__all__ = ["RunConfig", "run_main_job"]
