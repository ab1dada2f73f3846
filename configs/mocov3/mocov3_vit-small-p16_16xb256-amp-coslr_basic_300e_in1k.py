# Basic (no EMA): MoCo v3 ViT-S (DeiT-S), AdamW, 300 epochs (paper Table 5).
# The momentum encoder `momentum_encoder` (CosineEMA) is the EMA.
# The teacher is the algorithm's own EMA and stays as in the stock recipe
# (mmpretrain cannot train it without one); no EMA hook is added.
_base_ = 'mmpretrain::mocov3/mocov3_vit-small-p16_16xb256-amp-coslr-300e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)
