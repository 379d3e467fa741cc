"""PreProjectedAttention against attention written out in float64, outputs and gradients: the
fused path (no value RPE; with and without a logit bias that blocks pairs) and the explicit one
(value RPE, bias as the product's accumulator)."""
import pytest
import torch

from ikne_plugin.models.layers import PreProjectedAttention

B, H, Q, S, Dk, Dv, L = 2, 3, 5, 7, 6, 4, 5


def reference(module, q, k, v, logit_bias, value_rpe):
    """softmax(q k^T / sqrt(Dk) + bias) (v + per-pair value RPE), then out_proj."""
    attn = (q @ k.transpose(-1, -2) * Dk ** -0.5 + (0 if logit_bias is None else logit_bias)).softmax(-1)
    out = attn @ v
    if value_rpe is not None:
        rel_idx, table = value_rpe  # table [3, L, H, Dv]
        pair_values = sum(table[a][rel_idx[..., a]] for a in range(3))  # [B, Q, S, H, Dv]
        out = out + torch.einsum('bhqs,bqshd->bhqd', attn, pair_values)
    return module.out_proj(out.transpose(1, 2).reshape(B * Q, -1))


@pytest.mark.parametrize('with_bias', [False, True])
@pytest.mark.parametrize('with_rpe', [False, True])
def test_matches_written_out_attention(with_bias, with_rpe):
    torch.manual_seed(0)
    module = PreProjectedAttention(H * Dv, H).double()
    q, k = (torch.randn(B, H, n, Dk, dtype=torch.float64, requires_grad=True) for n in (Q, S))
    v = torch.randn(B, H, S, Dv, dtype=torch.float64, requires_grad=True)
    leaves = [q, k, v, *module.parameters()]
    bias = rpe = None
    if with_bias:
        bias = torch.randn(B, H, Q, S, dtype=torch.float64, requires_grad=True)
        leaves.append(bias)
        blocked = torch.rand(B, 1, Q, S) < 0.3
        blocked[..., 0] = False  # every row keeps a key
    if with_rpe:
        table = torch.randn(3, L, H, Dv, dtype=torch.float64, requires_grad=True)
        rpe = (torch.randint(0, L, (B, Q, S, 3)), table)
        leaves.append(table)
    results = []
    for attend in (module, lambda *args: reference(module, *args)):
        run_bias = None if bias is None else bias.masked_fill(blocked, float('-inf'))
        out = attend(q, k, v, run_bias, rpe)
        results.append((out, torch.autograd.grad(out.square().sum(), leaves)))
        if bias is not None:  # the module leaves its input alone
            assert torch.equal(run_bias, bias.detach().masked_fill(blocked, float('-inf')))
    assert results[0][0].shape == (B * Q, H * Dv)
    torch.testing.assert_close(results[0], results[1])
