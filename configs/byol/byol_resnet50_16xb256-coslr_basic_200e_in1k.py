# Basic (no EMA): BYOL R-50, LARS, 200 epochs (paper Table 5). The target
# network `target_net` (CosineEMA) is the EMA.
# The teacher is the algorithm's own EMA and stays as in the stock recipe
# (mmpretrain cannot train it without one); no EMA hook is added.
_base_ = 'mmpretrain::byol/byol_resnet50_16xb256-coslr-200e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)
