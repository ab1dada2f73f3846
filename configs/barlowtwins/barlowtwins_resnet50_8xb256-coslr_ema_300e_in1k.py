# +EMA: Barlow Twins R-50, LARS, 300 epochs (no EMA in the algorithm).
# EMA: paper alpha 0.99996 -> mmengine momentum 4e-5 (m = 1 - alpha).
_base_ = 'mmpretrain::barlowtwins/barlowtwins_resnet50_8xb256-coslr-300e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [dict(type='EMAHook', momentum=4e-5)]
