# +EMA: ConvNeXt-T, AdamW, 300 epochs (paper Table 2). The stock recipe
# carries EMAHook(momentum=1e-4): the basic variant drops it, +EMA / +SEMA
# replace it.
# EMA: paper alpha 0.9999 -> mmengine momentum 1e-4 (m = 1 - alpha).
_base_ = 'mmpretrain::convnext/convnext-tiny_32xb128_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [dict(type='EMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]
