"""An ``SFTTrainer`` whose loss projects only the completion positions through the LM head.

TRL 1.16 computes the SFT loss with a fused, chunked LM head. On a GPU its Triton kernel scores only the positions
that carry a label; everywhere else it scores *every* position (so that tile shapes stay fixed for compilers) and
recomputes the logits in the backward pass to save memory. For prompt-completion rows on a CPU that is the wrong
trade: a row is ~600 tokens of prompt and ~30 of answer, and SmolLM2's LM head (576 x 49,152) is a fifth of the
model's forward FLOPs, so most of the head's work — forward, recompute and backward — is spent on positions whose
loss is then masked to zero.

:class:`CompletionOnlySFTTrainer` asks the model for logits at the completion positions only (transformers'
``logits_to_keep`` takes a tensor of positions) and computes the same loss as TRL — summed token NLL over
``num_items_in_batch`` — plus the same ``entropy`` and ``mean_token_accuracy`` metrics. It steps aside (TRL's own
loss) where that is better or needed: on CUDA, and when a caller wants the outputs back.
"""

from __future__ import annotations

from typing import Any

from trl import SFTTrainer


def completion_positions(labels) -> Any:
    """Sequence positions whose *next* token has a label in any row of the batch (the logits the loss needs)."""
    return (labels[:, 1:] != -100).any(dim=0).nonzero().squeeze(-1)


def completion_log_probs(logits, targets) -> tuple[Any, Any, Any]:
    """(token log-probs, per-token entropy, top-1 hits) of ``targets`` under ``logits``, zero where target = -100."""
    import torch

    mask = targets != -100
    log_probs = torch.log_softmax(logits.float(), dim=-1)
    chosen = log_probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * mask
    with torch.no_grad():
        entropy = -(log_probs.exp() * log_probs).sum(-1) * mask
        top1 = (logits.argmax(-1) == targets) & mask
    return chosen, entropy, top1


class CompletionOnlySFTTrainer(SFTTrainer):
    """``SFTTrainer`` with the LM head applied to completion positions only (off CUDA); same loss, same metrics."""

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs.get("labels")
        stock = labels is None or labels.is_cuda or "attention_mask" not in inputs or self.aux_loss_enabled
        if stock or return_outputs:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        positions = completion_positions(labels)
        forward_inputs = {key: value for key, value in inputs.items() if key != "labels"}
        logits = model(**forward_inputs, use_cache=False, logits_to_keep=positions).logits
        log_probs, entropy, top1 = completion_log_probs(logits, labels[:, 1:][:, positions])
        valid = (labels[:, 1:] != -100).sum()
        # As TRL: the tokens of the whole accumulated batch divide the sum, so every token weighs the same.
        count = valid.clamp(min=1) if num_items_in_batch is None else num_items_in_batch
        loss = -log_probs.sum() / count
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * (self.accelerator.num_processes // self.get_tp_size())
        self._log_metrics(inputs, valid, entropy.sum(), top1.sum())
        return loss

    def _log_metrics(self, inputs, valid, entropy_sum, correct) -> None:
        """The metrics TRL's ``compute_loss`` logs: entropy, token accuracy and the running token count."""
        mode = "train" if self.model.training else "eval"
        gather = self.accelerator.gather_for_metrics
        num_valid, entropy_sum, correct = gather(valid).sum(), gather(entropy_sum).sum(), gather(correct).sum()
        self._metrics[mode]["entropy"].append((entropy_sum / num_valid).item() if num_valid > 0 else 0.0)
        self._metrics[mode]["mean_token_accuracy"].append((correct / num_valid).item() if num_valid > 0 else 0.0)
        if mode == "train":
            self._total_train_tokens += gather(inputs["attention_mask"].sum()).sum().item() // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
