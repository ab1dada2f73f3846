# +EMA: SimMIM Swin-B, AdamW, 800 epochs (paper Table 5 uses a ViT-B encoder;
# mmpretrain ships SimMIM with Swin-B).
# EMA: paper alpha 0.999 -> mmengine momentum 1e-3 (m = 1 - alpha).
_base_ = 'mmpretrain::simmim/simmim_swin-base-w6_16xb128-amp-coslr-800e_in1k-192px.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [dict(type='EMAHook', momentum=1e-3)]
