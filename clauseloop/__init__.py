"""clauseloop: contract review on CUAD as a DSPy compound AI program.

Stages live in subpackages: ``data`` (CUAD loading, categories, splits), ``models`` (offline model store),
``retrieval`` (chunking and indexes), ``engine`` (local LM for DSPy), ``program`` (the QA program and metrics),
``optimizers`` (teleprompters), ``finetune`` (SFT/DPO distillation), and ``cli``.
Importing the package is cheap: heavy libraries load inside the functions that need them.
"""

__version__ = "0.1.0"
