# Basic (no EMA): DeiT-S, AdamW, 300 epochs (paper Table 2).
_base_ = 'mmpretrain::deit/deit-small_4xb256_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)
