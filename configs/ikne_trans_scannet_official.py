# The official IKNE (or MAFT) weights, converted, with the released code's training behaviour
# where our defaults deliberately differ (README, "Choices where the paper is silent ..."):
#   python tools/convert_checkpoint.py ikne IKNE_RELEASE.pth work_dirs/ikne_official.pth
#   python tools/test.py configs/ikne_trans_scannet_official.py work_dirs/ikne_official.pth
# Model and inference are those of ikne_trans_scannet.py (already the release's); the switches
# below act on training only, e.g. fine-tuning the released weights.
_base_ = ['./ikne_trans_scannet.py']

model = dict(head=dict(criterion=dict(
    average_last_dice=False,  # MAFT's last-layer Dice loss is not averaged over the batch
    ika_loss=dict(target='identity', normalize='batch'),  # the release's IKA
    isg_loss=None)))  # the release has no ISG term
