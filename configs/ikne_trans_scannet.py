# IKNE (transformer) on ScanNet v2: the paper's recipe (MAFT's configuration plus IKNE's losses).
#   python tools/train.py configs/ikne_trans_scannet.py
#   python tools/test.py configs/ikne_trans_scannet.py CKPT
_base_ = [
    '_base_/default_runtime.py',
    '_base_/datasets/scannet_instance.py',
    '_base_/models/ikne_trans.py',
    '_base_/schedules/ikne_512e.py',
]
