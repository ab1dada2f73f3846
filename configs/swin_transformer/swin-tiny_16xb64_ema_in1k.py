# +EMA: Swin-T, AdamW, 300 epochs (paper Table 2).
# EMA: paper alpha 0.9999 -> mmengine momentum 1e-4 (m = 1 - alpha).
_base_ = 'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [dict(type='EMAHook', momentum=1e-4)]
