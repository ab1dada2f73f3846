# +SEMA: MAE ViT-B/16, AdamW, 800 epochs (paper Table 5).
# SEMA: paper alpha 0.999 -> mmengine momentum 1e-3, switch interval T = 1
# epoch.
_base_ = 'mmpretrain::mae/mae_vit-base-p16_8xb512-amp-coslr-800e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

custom_hooks = [
    dict(
        type='SEMAHook',
        momentum=1e-3,
        switch_interval=1,
        switch_by_epoch=True)
]
