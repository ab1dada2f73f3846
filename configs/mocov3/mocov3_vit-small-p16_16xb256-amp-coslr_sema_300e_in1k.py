# +SEMA: MoCo v3 ViT-S (DeiT-S), AdamW, 300 epochs (paper Table 5). The
# momentum encoder `momentum_encoder` (CosineEMA) is the EMA.
# SEMA: the algorithm's own EMA (teacher momentum: paper alpha 0.9999 ->
# mmengine momentum 1e-4) is switched with the online network every epoch
# (SSLSwitchHook).
_base_ = 'mmpretrain::mocov3/mocov3_vit-small-p16_16xb256-amp-coslr-300e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

model = dict(base_momentum=1e-4)

custom_hooks = [
    dict(
        type='SSLSwitchHook',
        direction='online_to_ema',
        switch_interval=1)
]
