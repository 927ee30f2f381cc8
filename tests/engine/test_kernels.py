"""Weight-major linear products: same numbers as nn.Linear, used only where they are faster."""

from __future__ import annotations

import torch

from clauseloop.engine import kernels
from clauseloop.engine.kernels import use_weight_major_linears


def test_weight_major_linears_match_the_default_for_every_batch_shape():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(24, 48), torch.nn.Linear(48, 8, bias=False))
    reference = torch.nn.Sequential(*[torch.nn.Linear(l.in_features, l.out_features, bias=l.bias is not None)
                                      for l in model])
    reference.load_state_dict(model.state_dict())
    assert use_weight_major_linears(model) == 2
    for shape in [(1, 1, 24), (16, 1, 24), (3, 5, 24), (2, 100, 24)]:  # one row, decoding rows, small, prefill
        x = torch.randn(*shape)
        out = model(x)
        assert out.shape == (*shape[:-1], 8) and out.is_contiguous()
        torch.testing.assert_close(out, reference(x), rtol=1e-5, atol=1e-5)


def test_weight_major_path_is_taken_only_between_the_row_limits(monkeypatch):
    layer = torch.nn.Linear(4, 4)
    use_weight_major_linears(layer)
    calls = []
    original = torch.Tensor.t
    monkeypatch.setattr(torch.Tensor, "t", lambda self: calls.append(self.shape) or original(self))
    layer(torch.randn(1, 4))
    layer(torch.randn(kernels.MAX_WEIGHT_MAJOR_ROWS + 1, 4))
    assert calls == []
    layer(torch.randn(8, 4))
    assert calls  # the weight-major product transposes its input
