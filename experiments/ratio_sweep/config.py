# Frozen copy of experiments/digits/config.py as it was when the ratio sweep
# was designed (batch 32 -> 32 iterations per epoch); that file is owned by
# another experiment and changed under a running sweep (batch 64, 10 epochs),
# so the sweep reads this copy: batch 32 as originally, 15 epochs (sweep.py
# sets max_epochs and the cosine T_max from --epochs anyway).
# mmpretrain ImageClassifier (tiny ResNet-18, base width 8) on scikit-learn's
# 8x8 digits. SGD + cosine, 15 epochs, batch 32 (1000 train images -> 32
# iterations per epoch). Hooks are added per run by experiments/ratio_sweep/sweep.py.
custom_imports = dict(imports=['experiments.digits.dataset', 'sema_mm'],
                      allow_failed_imports=False)
default_scope = 'mmpretrain'

model = dict(
    type='ImageClassifier',
    data_preprocessor=dict(type='ClsDataPreprocessor', num_classes=10,
                           mean=[85.0], std=[100.0], to_rgb=False),
    backbone=dict(type='ResNet_CIFAR', depth=18, in_channels=1,
                  stem_channels=8, base_channels=8, out_indices=(3, )),
    neck=dict(type='GlobalAveragePooling'),
    head=dict(type='LinearClsHead', num_classes=10, in_channels=64,
              loss=dict(type='CrossEntropyLoss', loss_weight=1.0),
              topk=(1, )))

pipeline = [dict(type='PackInputs')]
train_dataloader = dict(
    batch_size=32, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='SklearnDigits', split='train', pipeline=pipeline))
val_dataloader = dict(
    batch_size=256, num_workers=0,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='SklearnDigits', split='test', pipeline=pipeline))
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_dataloader = val_dataloader
test_evaluator = val_evaluator

max_epochs = 15
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=1)
val_cfg = dict()
test_cfg = dict()
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9,
                                    weight_decay=5e-4, nesterov=False))
param_scheduler = [dict(type='CosineAnnealingLR', T_max=max_epochs, by_epoch=True,
                        convert_to_iter_based=True, eta_min=0.0)]

default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=8),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', interval=max_epochs,
                    max_keep_ckpts=1, save_last=True),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='VisualizationHook', enable=False))
custom_hooks = []
env_cfg = dict(cudnn_benchmark=False, dist_cfg=dict(backend='gloo'),
               mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0))
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(type='UniversalVisualizer', vis_backends=vis_backends)
log_level = 'WARNING'
load_from = None
resume = False
randomness = dict(seed=0, deterministic=False)
