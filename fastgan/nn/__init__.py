"""Drop-in fused layers for any PyTorch model."""
from .batchnorm_act import BatchNormLeakyReLU2d, SyncBatchNormLeakyReLU2d, convert_sync_batchnorm
from .fuse import fuse_bn_act
from .loss import PatchGANLoss
from .penalty import r1_penalty, wgan_gp_penalty

__all__ = ["BatchNormLeakyReLU2d", "SyncBatchNormLeakyReLU2d", "convert_sync_batchnorm", "fuse_bn_act",
           "PatchGANLoss", "r1_penalty", "wgan_gp_penalty"]
