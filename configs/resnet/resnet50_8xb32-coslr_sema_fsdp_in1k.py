# +SEMA under FSDP (mmengine FlexibleRunner): the recipe of
# resnet50_8xb32-coslr_sema_in1k.py with parameters, gradients and optimizer
# state sharded over the ranks. SEMAHook keeps the EMA of each rank's shard
# (docs/sharded.md). On machines without a GPU add
# model_wrapper=dict(use_orig_params=True, device_id=torch.device('cpu')).
_base_ = './resnet50_8xb32-coslr_sema_in1k.py'

runner_type = 'FlexibleRunner'
strategy = dict(
    # FSDPStrategy with mmengine's resume fixed for torch >= 2.1
    type='ResumableFSDPStrategy',
    # SEMAHook needs the original parameters visible
    model_wrapper=dict(use_orig_params=True))

# Unlike DDP, FSDP and DeepSpeed do not broadcast buffers: each rank's
# BatchNorm statistics follow its own batches. Average them at the end of
# every epoch, so that validation on N ranks and the exported EMA (whose
# buffers are rank 0's) see the same statistics.
default_hooks = dict(sync_buffers=dict(type='SyncBuffersHook'))
