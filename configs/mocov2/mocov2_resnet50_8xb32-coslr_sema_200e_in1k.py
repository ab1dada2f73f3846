# +SEMA: MoCo v2 R-50, SGD, 200 epochs. The momentum encoder `encoder_k` is
# the EMA.
# SEMA: the algorithm's own EMA (teacher momentum: paper alpha 0.9999 ->
# mmengine momentum 1e-4) is switched with the online network every epoch
# (SSLSwitchHook).
_base_ = 'mmpretrain::mocov2/mocov2_resnet50_8xb32-coslr-200e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)

model = dict(momentum=1e-4)

custom_hooks = [
    dict(
        type='SSLSwitchHook',
        direction='online_to_ema',
        switch_interval=1)
]
