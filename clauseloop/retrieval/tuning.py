"""Fine-tune the embedder's top layers on gold clauses, jointly with the category probes.

The linear probes of :mod:`clauseloop.retrieval.fitting` read frozen MiniLM embeddings; here the top ``layers``
transformer layers are trained too, with one logistic output per category (its weights *are* the probes, so the
result drops into :class:`~clauseloop.retrieval.learned.LearnedQueries` unchanged). Two things keep the embedding
usable for free-text queries, which nothing here trains: the lower layers stay frozen, and an *anchor* loss keeps
each passage's unit embedding near the one the frozen base model gives it (computed in the same step by a frozen
copy of the trained layers).

Training passages: every passage that covers ≥ 50 % of a gold span of any category (a multi-label row), plus as
many negatives — half of them the neighbours of positives (the hard case: the text around a clause), half drawn at
random. Only the trained layers are stored (:mod:`clauseloop.models.tuned`), a few MB instead of the model.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from clauseloop.data.records import CuadDataset
from clauseloop.retrieval.chunking import ChunkConfig, Passage
from clauseloop.retrieval.fitting import Labelled, label_passages
from clauseloop.retrieval.learned import LearnedQueries

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TuneConfig:
    """How the embedder is fine-tuned (defaults: what `bench/retrieval.py --compare-tuned` measured)."""

    layers: int = 2  # top transformer layers trained (of MiniLM's 6); fewer: faster and a smaller artifact
    epochs: float = 1.0
    batch_size: int = 32
    lr: float = 3e-5  # the transformer layers
    head_lr: float = 1e-3  # the category probes (warm-started from linear probes when given)
    warmup: float = 0.06  # share of steps with a rising learning rate
    negatives_per_positive: float = 1.0
    anchor: float = 1.0  # weight of ‖tuned − base‖² of unit passage embeddings (keeps free-text queries working)
    max_length: int = 256  # tokens per passage (600-character passages are ~150)
    max_passages: int | None = None  # cap on training passages (quick runs, tests)
    seed: int = 0

    def __post_init__(self) -> None:
        if self.layers < 1:  # the upper bound is the model's depth, checked when it is loaded
            raise ValueError(f"layers must be between 1 and the model's depth, got {self.layers}")
        if self.epochs <= 0 or self.batch_size < 1:
            raise ValueError("epochs must be > 0 and batch_size ≥ 1")

    def to_dict(self) -> dict:
        return asdict(self)


def training_rows(labelled: Labelled, categories: list[str], config: TuneConfig) -> tuple[list[int], np.ndarray]:
    """Rows to train on and their ``(rows, categories)`` 0/1 labels."""
    rng = random.Random(config.seed)
    labels_by_row: dict[int, set[int]] = {}
    for c, category in enumerate(categories):
        for hits in labelled.positives.get(category, {}).values():
            for row in hits:
                labels_by_row.setdefault(row, set()).add(c)
    positives = sorted(labels_by_row)
    wanted = int(round(len(positives) * config.negatives_per_positive))
    neighbours = sorted({r + d for r in positives for d in (-2, -1, 1, 2)} - set(positives))
    neighbours = [r for r in neighbours if 0 <= r < len(labelled.passages)]
    rng.shuffle(neighbours)
    negatives = neighbours[: wanted // 2]
    others = sorted(set(range(len(labelled.passages))) - set(positives) - set(negatives))
    negatives += rng.sample(others, min(wanted - len(negatives), len(others)))
    rows = positives + negatives
    rng.shuffle(rows)
    if config.max_passages is not None:
        rows = rows[: config.max_passages]
    labels = np.zeros((len(rows), len(categories)), dtype=np.float32)
    for n, row in enumerate(rows):
        labels[n, sorted(labels_by_row.get(row, ()))] = 1.0
    return rows, labels


class _TunedBert:
    """MiniLM split at ``len(layers) - trained``: a frozen bottom, the trained top, a frozen copy of the original
    top (for the anchor) and the category head. Plain attribute holder: the optimizer gets the parameters."""

    def __init__(self, bert, trained: int, head_init: np.ndarray | None, n_categories: int, anchored: bool = True):
        import copy

        import torch

        self.bert = bert
        layers = bert.encoder.layer
        if trained > len(layers):
            raise ValueError(f"the model has {len(layers)} transformer layers; tune at most that many, not {trained}")
        self.split = len(layers) - trained
        # The frozen copy is only needed for the anchor loss (a classifier trains without one).
        self.base_top = copy.deepcopy(layers[self.split:]).eval() if anchored else None
        frozen_copy = list(self.base_top.parameters()) if anchored else []
        for parameter in list(bert.parameters()) + frozen_copy:
            parameter.requires_grad_(False)
        for parameter in layers[self.split:].parameters():
            parameter.requires_grad_(True)
        self.head = torch.nn.Linear(bert.config.hidden_size, n_categories)
        with torch.no_grad():
            if head_init is not None:
                self.head.weight.copy_(torch.as_tensor(head_init))
            self.head.bias.fill_(-3.0)  # the positive rate of a category among training rows is a few percent

    def trained_parameters(self) -> list:
        return list(self.bert.encoder.layer[self.split:].parameters())

    def forward(self, input_ids, attention_mask, token_type_ids):
        """(tuned unit embeddings, base unit embeddings or None without an anchor) of a batch."""
        import torch

        additive = (1.0 - attention_mask[:, None, None, :].float()) * torch.finfo(torch.float32).min
        with torch.no_grad():
            hidden = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            for layer in self.bert.encoder.layer[: self.split]:
                hidden = layer(hidden, attention_mask=additive)
            base = None
            if self.base_top is not None:
                base = hidden
                for layer in self.base_top:
                    base = layer(base, attention_mask=additive)
        tuned = hidden
        for layer in self.bert.encoder.layer[self.split:]:
            tuned = layer(tuned, attention_mask=additive)
        return _mean_unit(tuned, attention_mask), None if base is None else _mean_unit(base, attention_mask)


def _mean_unit(hidden, attention_mask):
    """Mean over real tokens, unit length: MiniLM's sentence-transformers pooling."""
    import torch

    weights = attention_mask[:, :, None].to(hidden.dtype)
    pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    return torch.nn.functional.normalize(pooled, dim=-1)


def length_batches(lengths: list[int], batch_size: int, seed: int) -> list[list[int]]:
    """Batches of similar length (less padding), in a seeded random order: sort within windows of 50 batches."""
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    window = batch_size * 50
    batches = []
    for start in range(0, len(order), window):
        chunk = sorted(order[start:start + window], key=lambda i: lengths[i])
        batches += [chunk[i:i + batch_size] for i in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


@dataclass
class TunedLayers:
    """What tuning produces: the trained layers' weights (BertModel state-dict keys), the category probes (the
    head's rows) and a manifest of how they were made."""

    layers: dict[str, np.ndarray]
    probes: dict[str, np.ndarray]
    manifest: dict


def tune_embedder(labelled: Labelled, categories: list[str], config: TuneConfig = TuneConfig(), *,
                  base: str = "minilm-l6", head_init: dict[str, np.ndarray] | None = None,
                  texts: Sequence[str] | None = None, progress: bool = False) -> TunedLayers:
    """Train the top ``config.layers`` layers of ``base`` and one probe per category on ``labelled``'s passages.

    ``head_init``: probes fitted on the frozen model (e.g. the shipped ones) to start the head from. ``texts``:
    what the model reads for each passage of ``labelled`` (default: the passage text).
    """
    import torch
    from sentence_transformers import SentenceTransformer

    from clauseloop.models.store import prepare

    torch.manual_seed(config.seed)
    model = SentenceTransformer(prepare(base).path, device="cpu")  # a private copy: cached models stay untouched
    dim = model.get_embedding_dimension()
    init = np.stack([head_init.get(c, np.zeros(dim, np.float32)) for c in categories]) if head_init else None
    net = _TunedBert(model[0].auto_model, config.layers, init, len(categories), anchored=config.anchor > 0)
    rows, labels = training_rows(labelled, categories, config)
    inputs = [texts[r] if texts is not None else labelled.passages[r].text for r in rows]
    input_ids = model.tokenizer(inputs, truncation=True, max_length=config.max_length)["input_ids"]
    logger.info("tuning %d layers on %d passages (%d positive)", config.layers, len(rows),
                int((labels.sum(1) > 0).sum()))
    steps = _train(net, model.tokenizer, input_ids, labels, config, progress)
    layers = net.bert.encoder.layer
    trained = {f"encoder.layer.{net.split + n}.{key}": value.detach().numpy().copy()
               for n, layer in enumerate(layers[net.split:]) for key, value in layer.state_dict().items()}
    probes = {c: net.head.weight[n].detach().numpy().astype(np.float32) for n, c in enumerate(categories)}
    manifest = {"base": base, "tune": config.to_dict(), "training_passages": len(rows), "steps": steps}
    return TunedLayers(trained, probes, manifest)


def _train(net: _TunedBert, tokenizer, input_ids: list, labels: np.ndarray, config: TuneConfig,
           progress: bool) -> int:
    """AdamW with linear warm-up and decay over length-grouped batches; returns the number of steps taken.

    Loss per batch: the heads' binary cross-entropy summed over categories (each row is a multi-label example),
    plus ``config.anchor`` × the squared distance of each tuned unit embedding from the base model's.
    """
    import torch
    from tqdm.auto import tqdm

    batches = length_batches([len(ids) for ids in input_ids], config.batch_size, config.seed)
    steps = max(1, int(round(len(batches) * config.epochs)))
    warmup = max(1, int(steps * config.warmup))
    optimizer = torch.optim.AdamW([{"params": net.trained_parameters(), "lr": config.lr},
                                   {"params": net.head.parameters(), "lr": config.head_lr}], weight_decay=0.01)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup))))
    net.bert.train()
    bar = tqdm(range(steps), desc="tuning embedder", disable=not progress)
    for step in bar:
        batch = batches[step % len(batches)]
        features = tokenizer.pad({"input_ids": [input_ids[i] for i in batch]}, return_tensors="pt")
        tuned, anchor = net.forward(features["input_ids"], features["attention_mask"],
                                    torch.zeros_like(features["input_ids"]))
        target = torch.as_tensor(labels[batch])
        classify = torch.nn.functional.binary_cross_entropy_with_logits(net.head(tuned), target, reduction="sum")
        drift = ((tuned - anchor) ** 2).sum(-1).mean() if anchor is not None else torch.zeros(())
        loss = classify / len(batch) + config.anchor * drift
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % 20 == 0:
            bar.set_postfix(loss=f"{loss.item():.3f}", drift=f"{drift.item():.4f}")
            logger.info("step %d/%d loss %.4f drift %.5f", step, steps, loss.item(), drift.item())
    net.bert.eval()
    return steps


def tune_for_learned(dataset: CuadDataset, learned: LearnedQueries, config: TuneConfig, *, base: str = "minilm-l6",
                     read: Callable[[Sequence[Passage]], list[str]] | None = None, name: str,
                     progress: bool = False) -> TunedLayers:
    """Tune ``base`` on ``dataset``'s gold clauses for ``learned``'s categories, the head started from its probes
    when they are over ``base``; ``read`` turns the training passages into what the model reads (default: their
    text). The manifest records ``name``, the head's start and the data."""
    from clauseloop.retrieval.learned import data_fingerprint

    labelled = label_passages(dataset, ChunkConfig(**learned.manifest.get("chunking", {})))
    categories = sorted(model.category for model in learned.models.values())
    same_base = learned.embedder == base
    head_init = {m.category: m.dense for m in learned.models.values() if m.dense is not None} if same_base else None
    texts = read(labelled.passages) if read is not None else None
    tuned = tune_embedder(labelled, categories, config, base=base, head_init=head_init, texts=texts,
                          progress=progress)
    tuned.manifest.update(name=name, head_init=learned.embedder if head_init else None,
                          fitted_on={"contracts": len(dataset.contracts), "passages": len(labelled.passages),
                                     "fingerprint": data_fingerprint(dataset.contracts, dataset.questions)})
    return tuned


def tune_learned_queries(dataset: CuadDataset, learned: LearnedQueries, embedder_name: str,
                         config: TuneConfig = TuneConfig(), *, base: str = "minilm-l6",
                         progress: bool = False) -> tuple[TunedLayers, LearnedQueries]:
    """Tune ``base`` on ``dataset``'s gold clauses for ``learned``'s categories, starting the head from its probes.

    Returns the tuned layers and a copy of ``learned`` whose probes are the tuned head, valid over embeddings of
    the tuned model, which the caller saves under ``embedder_name`` (the name the index will know it by).
    """
    tuned = tune_for_learned(dataset, learned, config, base=base, name=Path(embedder_name).name, progress=progress)
    models = {key: replace(model, dense=tuned.probes[model.category], embedder=embedder_name)
              for key, model in learned.models.items()}
    manifest = {**learned.manifest, "embedder": embedder_name, "probe_embeddings": "tuned head",
                "tuned": dict(tuned.manifest)}
    return tuned, LearnedQueries(models, manifest)
