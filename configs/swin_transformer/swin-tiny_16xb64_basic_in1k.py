# Basic (no EMA): Swin-T, AdamW, 300 epochs (paper Table 2).
_base_ = 'mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)
