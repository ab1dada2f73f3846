# +EMA: ResNet-50, SGD, 100 epochs (PyTorch-style recipe, paper Table 2).
# EMA: paper alpha 0.9999 -> mmengine momentum 1e-4 (m = 1 - alpha).
_base_ = 'mmpretrain::resnet/resnet50_8xb32-coslr_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [dict(type='EMAHook', momentum=1e-4)]
