"""ISG, instance structure guidance: supervise F~ F^T, F~ a low-rank (truncated SVD) reconstruction of F."""
from typing import Optional

import torch
from mmdet3d.registry import MODELS

from .instance_similarity import InstanceSimilarityLoss


class _TopEigenProjector(torch.autograd.Function):
    """Projector onto the top-``rank`` eigenvectors of a symmetric PSD matrix G (or of each
    matrix of a batch [..., D, D]).

    ``torch.linalg.eigh``/``svd`` backward divides by every eigenvalue gap, so it is
    infinite (NaN) as soon as two singular values repeat, e.g. for a rank-deficient F,
    even though the projector itself does not depend on the basis chosen inside a
    repeated eigenspace. Its true derivative involves only the gaps between the kept
    and the dropped eigenvalues (perturbation theory):
        dP = V (K o (V^T dG V)) V^T,  K_ij = 1 / (l_i - l_j) for i kept, j dropped
    (and symmetric), 0 elsewhere. Gaps below ``1e-10 * max eigenvalue`` (numerically
    equal, e.g. two zero eigenvalues of a rank-deficient F, whose terms vanish since
    F v = 0 for both vectors) contribute 0. Computed in float64.
    """

    @staticmethod
    def forward(ctx, gram: torch.Tensor, rank: int) -> torch.Tensor:
        evals, evecs = torch.linalg.eigh(gram.double())  # ascending
        kept = evecs[..., -rank:]
        ctx.save_for_backward(evals, evecs)
        ctx.rank = rank
        return (kept @ kept.mT).to(gram.dtype)

    @staticmethod
    def backward(ctx, grad_proj: torch.Tensor):
        evals, evecs = ctx.saved_tensors
        n = evals.shape[-1]
        kept = torch.zeros(n, dtype=torch.bool, device=evals.device)
        kept[n - ctx.rank:] = True
        gap = evals[..., :, None] - evals[..., None, :]
        across = kept[:, None] ^ kept[None, :]
        scale = evals.abs().amax(-1, keepdim=True)[..., None].clamp_min(1e-300)
        usable = across & (gap.abs() > 1e-10 * scale)
        # 1 / (l_kept - l_dropped), symmetric: |gap| since kept eigenvalues are the larger ones
        # (where() rather than boolean indexing, which waits for the GPU to count the selection).
        inv_gap = torch.where(usable, 1.0 / gap.abs(), 0.0)
        g = grad_proj.double()
        g = (g + g.mT) / 2
        grad_gram = evecs @ (inv_gap * (evecs.mT @ g @ evecs)) @ evecs.mT
        return grad_gram.to(grad_proj.dtype), None


def truncated_svd_reconstruction(features: torch.Tensor, rank: int) -> torch.Tensor:
    """Rank-``rank`` truncated SVD reconstruction ``U_r S_r V_r^T`` of features [N, D] (or of
    each [N, D] of a batch [..., N, D]).

    Written as ``F P`` with P the projector onto the top right singular vectors (the
    top eigenvectors of F^T F), whose gradient stays finite for repeated singular
    values; see :class:`_TopEigenProjector`. A rank >= D returns F unchanged.
    """
    if rank >= features.shape[-1]:
        return features
    return features @ _TopEigenProjector.apply(features.mT @ features, rank)


@MODELS.register_module()
class ISGLoss(InstanceSimilarityLoss):
    """S = F~ F^T with F~ the rank-``rank`` truncated SVD reconstruction of F.

    Same target, normalisation and loss form as :class:`IKALoss` (see
    :class:`InstanceSimilarityLoss`). The low-rank F~ keeps the dominant structure of
    the instance features and drops the noise directions, so S compares each instance
    with that denoised structure (the paper's ISG figure). ``rank`` 32 (of 256
    channels) by default. Default weight 0.001, the released IKA weight: S is
    normalised to [0, 1] and summed over the same Nq x Nq entries as IKA, so the two
    terms have the same scale and this weight gives ISG the same share of the total
    loss that the released model gives IKA (no released ISG weight exists).
    """

    def __init__(self, rank: int = 32, **kwargs):
        super().__init__(**kwargs)
        if rank < 1:
            raise ValueError(f'rank must be >= 1, got {rank}')
        self.rank = rank

    def similarity(self, features: torch.Tensor, low_rank: Optional[torch.Tensor] = None) -> torch.Tensor:
        """F~ F^T of each scene, [B, N, D] -> [B, N, N]; F~ = ``low_rank`` where the head computed it
        (the kernel head runs the truncated SVD of its candidate features through Point
        Aggregator 2), else the truncated SVD of F: one batched eigendecomposition for all scenes
        (zero rows, the padding of smaller scenes, leave F^T F and so F~ unchanged)."""
        if low_rank is None:
            low_rank = truncated_svd_reconstruction(features, self.rank)
        return low_rank @ features.mT
