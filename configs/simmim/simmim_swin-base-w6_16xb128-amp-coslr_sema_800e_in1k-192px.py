# +SEMA: SimMIM Swin-B, AdamW, 800 epochs (paper Table 5 uses a ViT-B
# encoder; mmpretrain ships SimMIM with Swin-B).
# SEMA: paper alpha 0.999 -> mmengine momentum 1e-3, switch interval T = 1
# epoch.
_base_ = 'mmpretrain::simmim/simmim_swin-base-w6_16xb128-amp-coslr-800e_in1k-192px.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [
    dict(
        type='SEMAHook',
        momentum=1e-3,
        switch_interval=1,
        switch_by_epoch=True)
]
