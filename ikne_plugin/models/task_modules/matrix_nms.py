"""Matrix NMS (SOLOv2, Wang et al. 2020): soft suppression of overlapping masks in one matrix step."""
import torch


def matrix_nms(scores: torch.Tensor, labels: torch.Tensor, iou: torch.Tensor, kernel: str = 'linear',
               sigma: float = 2.0) -> torch.Tensor:
    """Decayed scores of masks sorted by descending score.

    Each mask's score is multiplied by min over higher-scored masks i of the same label of
    f(iou_i,this) / f(max iou of i with a mask above i), f(x) = 1 - x (``linear``) or
    exp(-sigma x^2) (``gaussian``). The factor never exceeds 1, so masks below a score
    threshold before NMS stay below it after.

    Args:
        scores: [P] scores, sorted descending.
        labels: [P] class of each mask.
        iou: [P, P] mask IoU.
    """
    if kernel not in ('linear', 'gaussian'):
        raise ValueError(f"kernel must be 'linear' or 'gaussian', got {kernel!r}")
    if len(scores) == 0:
        return scores
    same = labels[:, None] == labels[None, :]
    decay_iou = (iou * same).triu(diagonal=1)  # [i, j]: i scored above j
    compensate = decay_iou.max(0).values[:, None]  # per i: its largest overlap with a higher mask
    if kernel == 'linear':
        decay = (1 - decay_iou) / (1 - compensate).clamp_min(1e-6)
    else:
        decay = torch.exp(-sigma * (decay_iou ** 2 - compensate ** 2))
    return scores * decay.min(0).values
