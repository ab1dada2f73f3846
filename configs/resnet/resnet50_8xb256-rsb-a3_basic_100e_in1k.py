# Basic (no EMA): ResNet-50, LAMB, RSB A3 recipe, 100 epochs (paper Tables 2,
# A3).
_base_ = 'mmpretrain::resnet/resnet50_8xb256-rsb-a3-100e_in1k.py'

custom_imports = dict(imports=['sema_mm'], allow_failed_imports=False)
