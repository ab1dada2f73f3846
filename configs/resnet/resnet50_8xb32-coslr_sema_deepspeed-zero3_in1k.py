# +SEMA under DeepSpeed ZeRO-3 (mmengine FlexibleRunner): the recipe of
# resnet50_8xb32-coslr_sema_in1k.py with parameters, gradients and optimizer
# state partitioned over the ranks. SEMAHook keeps the EMA of each rank's
# part of the fp32 master weights (docs/sharded.md). Stages 1 and 2 work the
# same way (zero_optimization=dict(stage=2)).
_base_ = './resnet50_8xb32-coslr_sema_in1k.py'

runner_type = 'FlexibleRunner'
strategy = dict(
    # DeepSpeedStrategy that lets hooks save and resume their state
    type='ResumableDeepSpeedStrategy',
    zero_optimization=dict(stage=3),
    # DeepSpeed clips gradients at norm 1.0 by default; the recipe does not
    gradient_clipping=0.0,
    # the recipe's torch SGD is not one of DeepSpeed's own optimizers
    config=dict(zero_allow_untested_optimizer=True))
optim_wrapper = dict(type='DeepSpeedOptimWrapper')

# Unlike DDP, FSDP and DeepSpeed do not broadcast buffers: each rank's
# BatchNorm statistics follow its own batches. Average them at the end of
# every epoch, so that validation on N ranks and the exported EMA (whose
# buffers are rank 0's) see the same statistics.
default_hooks = dict(sync_buffers=dict(type='SyncBuffersHook'))
