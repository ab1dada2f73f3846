# Basic (no EMA): ConvNeXt-T, AdamW, 300 epochs (paper Table 2). The stock
# recipe carries EMAHook(momentum=1e-4): the basic variant drops it, +EMA /
# +SEMA replace it.
_base_ = 'mmpretrain::convnext/convnext-tiny_32xb128_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

# Drop the stock EMAHook.
custom_hooks = []
