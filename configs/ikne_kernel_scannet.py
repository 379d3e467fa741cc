# Kernel-based IKNE on ScanNet v2: the transformer recipe with the head swapped for the kernel
# head (ISBNet's pipeline, as the paper's kernel figure draws it); data, backbone, schedule and
# the instance criterion (matching, set losses, IKA/ISG) are inherited unchanged.
#   python tools/train.py configs/ikne_kernel_scannet.py
#   python tools/test.py configs/ikne_kernel_scannet.py CKPT
_base_ = ['./ikne_trans_scannet.py']

model = dict(
    head=dict(
        _delete_=True,
        type='IKNEKernelHead',
        in_channels=32,
        num_classes=18,
        num_semantic_classes=20,
        background_classes=(0, 1),  # wall, floor
        channels=128,
        mask_channels=32,
        # Point Aggregator 1 and 2, dynamic convolution, matrix NMS: the sizes of the paper's
        # kernel figure / ISBNet (see ../shared/DESIGN.md, section 3).
        num_candidates=2048,
        radius1=0.2,
        num_neighbors1=32,
        num_instances=256,
        radius2=0.4,
        num_neighbors2=32,
        score_thr=0.2,
        min_points=100,
        topk=100,
        criterion={{_base_.model.head.criterion}}))
