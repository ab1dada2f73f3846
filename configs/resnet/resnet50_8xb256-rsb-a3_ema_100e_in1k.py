# +EMA: ResNet-50, LAMB, RSB A3 recipe, 100 epochs (paper Tables 2, A3).
# EMA: paper alpha 0.9999 -> mmengine momentum 1e-4 (m = 1 - alpha).
_base_ = 'mmpretrain::resnet/resnet50_8xb256-rsb-a3-100e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [dict(type='EMAHook', momentum=1e-4)]
