"""The main job: the loop that loads data, prepares models, runs the program, and (later) optimizes and distills."""

from clauseloop.loop.run import RunConfig, run_main_job

__all__ = ["RunConfig", "run_main_job"]
