"""IoU between binarised predicted masks and ground-truth masks over superpoints."""
import torch


@torch.no_grad()
def pairwise_mask_iou(mask_logits: torch.Tensor, gt_masks: torch.Tensor) -> torch.Tensor:
    """IoU of every predicted mask (logit >= 0, i.e. sigmoid >= 0.5) with every GT mask.

    mask_logits: [..., Q, S]; gt_masks: bool/float [..., K, S] (binarised at 0.5) -> [..., Q, K].
    Exact intersection / union, 0 for two empty masks. (MAFT's ``get_iou`` in
    maft/model/loss.py divides by union + 1e-6: a relative difference below 1e-6, but
    with it an IoU of exactly 0.5 would fail a ">= 0.5" test.)
    """
    pred = (mask_logits >= 0).to(mask_logits.dtype)
    gt = (gt_masks > 0.5).to(mask_logits.dtype)
    inter = pred @ gt.transpose(-1, -2)
    union = pred.sum(-1)[..., :, None] + gt.sum(-1)[..., None, :] - inter
    return inter / union.clamp_min(1)
