"""Drop-in fused layers for any PyTorch model."""
from .batchnorm_act import BatchNormLeakyReLU2d, SyncBatchNormLeakyReLU2d, convert_sync_batchnorm
from .fuse import fuse_bn_act
from .loss import PatchGANLoss

__all__ = ["BatchNormLeakyReLU2d", "SyncBatchNormLeakyReLU2d", "convert_sync_batchnorm", "fuse_bn_act",
           "PatchGANLoss"]
