# +EMA: BYOL R-50, LARS, 200 epochs (paper Table 5). The target network
# `target_net` (CosineEMA) is the EMA.
# EMA teacher momentum: paper alpha 0.99996 -> mmengine momentum 4e-5 (m = 1
# - alpha).
_base_ = 'mmpretrain::byol/byol_resnet50_16xb256-coslr-200e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

model = dict(base_momentum=4e-5)
