# +EMA: MoCo v3 ViT-S (DeiT-S), AdamW, 300 epochs (paper Table 5). The
# momentum encoder `momentum_encoder` (CosineEMA) is the EMA.
# EMA teacher momentum: paper alpha 0.99996 -> mmengine momentum 4e-5 (m = 1
# - alpha).
_base_ = 'mmpretrain::mocov3/mocov3_vit-small-p16_16xb256-amp-coslr-300e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

model = dict(base_momentum=4e-5)
