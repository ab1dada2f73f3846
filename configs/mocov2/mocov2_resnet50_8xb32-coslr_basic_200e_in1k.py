# Basic (no EMA): MoCo v2 R-50, SGD, 200 epochs. The momentum encoder
# `encoder_k` is the EMA.
# The teacher is the algorithm's own EMA and stays as in the stock recipe
# (mmpretrain cannot train it without one); no EMA hook is added.
_base_ = 'mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)
