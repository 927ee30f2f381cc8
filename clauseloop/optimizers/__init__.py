"""Teleprompter recipes (BootstrapFewShot, RandomSearch, MIPROv2) that compile the QA program; they never mutate their input."""
