# +SEMA: BYOL R-50, LARS, 200 epochs (paper Table 5). The target network
# `target_net` (CosineEMA) is the EMA.
# SEMA: the algorithm's own EMA (teacher momentum: paper alpha 0.9999 ->
# mmengine momentum 1e-4) is switched with the online network every epoch
# (SSLSwitchHook).
_base_ = 'mmpretrain::byol/byol_resnet50_16xb256-coslr-200e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

model = dict(base_momentum=1e-4)

custom_hooks = [
    dict(
        type='SSLSwitchHook',
        direction='online_to_ema',
        switch_interval=1)
]
