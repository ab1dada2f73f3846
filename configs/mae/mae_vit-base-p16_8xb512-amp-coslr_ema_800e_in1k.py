# +EMA: MAE ViT-B/16, AdamW, 800 epochs (paper Table 5).
# EMA: paper alpha 0.999 -> mmengine momentum 1e-3 (m = 1 - alpha).
_base_ = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-800e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [dict(type='EMAHook', momentum=1e-3)]
