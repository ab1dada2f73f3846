# +EMA: MoCo v2 R-50, SGD, 200 epochs. The momentum encoder `encoder_k` is
# the EMA.
# EMA teacher momentum: paper alpha 0.999 -> mmengine momentum 1e-3 (m = 1 -
# alpha).
_base_ = 'mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

model = dict(momentum=1e-3)
