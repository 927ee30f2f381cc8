"""The completion-only LM head gives TRL's loss and gradients on the real SmolLM2, at a fraction of the head's work."""

from __future__ import annotations

from pathlib import Path
from unittest.mock import patch

import pytest

from clauseloop.finetune.completion_loss import CompletionOnlySFTTrainer, completion_positions
from clauseloop.finetune.rows import render_row
from clauseloop.finetune.sft import SFTRunConfig, _trainable_model, _trainer_arguments
from clauseloop.finetune.sft_data import training_dataset

from tests.finetune.test_sft import write_rows


def test_positions_are_those_before_a_labelled_token_in_any_row():
    import torch

    labels = torch.tensor([[-100, -100, 5, 6, -100], [-100, -100, -100, -100, 7]])
    assert completion_positions(labels).tolist() == [1, 2, 3]


def rows() -> list[dict]:
    """Two rows of different lengths, so a batch pads one and their completions sit at different positions."""
    short = render_row(task="Governing Law", passages="[1] Governed by the laws of Ohio.",
                       quotes=["Governed by the laws of Ohio."], source="gold", contract_id="a", category="Governing Law")
    long = render_row(task="Termination For Convenience",
                      passages="[1] Either party may terminate this Agreement for any reason on thirty days' written "
                               "notice to the other party. [2] Fees are due monthly.",
                      quotes=["Either party may terminate this Agreement for any reason on thirty days' written "
                              "notice to the other party."], source="gold", contract_id="b",
                      category="Termination For Convenience")
    return [short, long]


@pytest.fixture(scope="module")
def trainer_and_batch(smollm2_dir, tmp_path_factory):
    from transformers import AutoTokenizer

    tmp: Path = tmp_path_factory.mktemp("completion-loss")
    config = SFTRunConfig(data=str(write_rows(tmp / "rows.jsonl", rows())), out=str(tmp / "run"), batch_size=2,
                          gradient_accumulation=1, max_steps=1, replay=0.0, lora_dropout=0.0)
    model, lora = _trainable_model(smollm2_dir, config)
    trainer = CompletionOnlySFTTrainer(
        model=model, args=_trainer_arguments(config, tmp / "checkpoints"),
        train_dataset=training_dataset(tmp / "rows.jsonl", tmp / "arrow"),
        processing_class=AutoTokenizer.from_pretrained(smollm2_dir), peft_config=lora,
    )
    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    return trainer, batch


def loss_and_grads(trainer, batch, compute_loss):
    trainer.model.zero_grad()
    items = (batch["labels"][:, 1:] != -100).sum()
    loss = compute_loss(trainer.model, dict(batch), num_items_in_batch=items)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in trainer.model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


@pytest.mark.real_model
def test_same_loss_and_gradients_as_trls_fused_head(trainer_and_batch):
    from trl import SFTTrainer

    trainer, batch = trainer_and_batch
    assert batch["attention_mask"].min() == 0, "the batch must pad one row for the test to mean anything"
    with patch.object(SFTTrainer, "compute_loss", side_effect=AssertionError("fell back to TRL's loss")):
        compact_loss, compact_grads = loss_and_grads(trainer, batch, trainer.compute_loss)
    stock_loss, stock_grads = loss_and_grads(trainer, batch, lambda *a, **k: SFTTrainer.compute_loss(trainer, *a, **k))
    assert 0 < compact_loss < 20
    assert compact_loss == pytest.approx(stock_loss, rel=1e-4)
    assert compact_grads.keys() == stock_grads.keys() and len(compact_grads) > 0
    for name, grad in compact_grads.items():
        scale = stock_grads[name].abs().max().item() + 1e-8
        assert (grad - stock_grads[name]).abs().max().item() / scale < 1e-3, name
    metrics = trainer._metrics["train"]
    assert metrics["entropy"][0] == pytest.approx(metrics["entropy"][1], rel=1e-3)
    assert metrics["mean_token_accuracy"][0] == pytest.approx(metrics["mean_token_accuracy"][1])
