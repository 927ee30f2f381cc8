"""Deterministic train/dev/test split by contract.

Contracts are ordered by a hash of their title and cut at the target proportions, so the split is the same in every
run and process (no RNG, no PYTHONHASHSEED), each split is within one contract of its target size, and a contract's
questions never straddle splits. Adding contracts moves few existing ones: order between old titles is unchanged.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from clauseloop.data.records import CuadDataset

SPLITS = ("train", "dev", "test")


@dataclass(frozen=True)
class SplitConfig:
    """Proportions of contracts in train / dev / test, and a salt to draw a different (still fixed) split."""

    train: float = 0.8
    dev: float = 0.1
    test: float = 0.1
    salt: str = ""

    def __post_init__(self) -> None:
        shares = (self.train, self.dev, self.test)
        if any(share < 0 for share in shares) or abs(sum(shares) - 1.0) > 1e-6:
            raise ValueError(f"split proportions must be non-negative and sum to 1, got {shares}")


def _title_key(title: str, salt: str) -> str:
    return hashlib.sha256(f"{salt}{title}".encode()).hexdigest()


def assign_splits(titles: list[str], config: SplitConfig = SplitConfig()) -> dict[str, str]:
    """Map each title to ``train``, ``dev`` or ``test``."""
    ordered = sorted(set(titles), key=lambda title: _title_key(title, config.salt))
    n_train = round(config.train * len(ordered))
    n_dev = round(config.dev * len(ordered))
    assignment = {}
    for rank, title in enumerate(ordered):
        assignment[title] = "train" if rank < n_train else "dev" if rank < n_train + n_dev else "test"
    return assignment


def split_dataset(dataset: CuadDataset, config: SplitConfig = SplitConfig()) -> dict[str, CuadDataset]:
    """``{"train": ..., "dev": ..., "test": ...}`` sub-datasets, split by contract."""
    assignment = assign_splits([c.title for c in dataset.contracts.values()], config)
    return {
        name: dataset.subset([cid for cid, c in dataset.contracts.items() if assignment[c.title] == name])
        for name in SPLITS
    }


def split_of(dataset: CuadDataset, split: str, config: SplitConfig = SplitConfig()) -> CuadDataset:
    """One split by name; ``all`` is the whole dataset."""
    if split == "all":
        return dataset
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)} or all")
    return split_dataset(dataset, config)[split]
