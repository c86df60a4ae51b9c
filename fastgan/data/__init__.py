"""Datasets, paired transforms and data preparation for fastgan (see docs/data.md)."""
from .base import SeededDataset, sample_rng
from .captions import (CaptionedFashionMNIST, CaptionedImageFolder, DefaultCaptionedPhotos, build_caption_datasets,
                       read_captions)
from .collate import collate_skipping
from .datasets import AlignedDataset, ClassFolderDataset, ImageFolderDataset, PairedFolderDataset
from .default import DefaultEdges2Photo
from .edges import canny_edges
from .files import IMAGE_EXTENSIONS, UnreadableImageWarning
from .idx import FASHION_MNIST_CLASSES, FASHION_MNIST_ROOT, IDXDataset, fashion_mnist, read_idx
from .superres import DefaultSuperResolution, SuperResolutionFolder, TooSmallImageWarning, downscale, superres_pair
from .transforms import CenterCropTransform, PairedTransform

__all__ = [
    "AlignedDataset", "CaptionedFashionMNIST", "CaptionedImageFolder", "DefaultCaptionedPhotos", "read_captions",
    "build_caption_datasets",
    "CenterCropTransform", "ClassFolderDataset", "DefaultEdges2Photo", "FASHION_MNIST_CLASSES",
    "FASHION_MNIST_ROOT", "IDXDataset", "IMAGE_EXTENSIONS", "ImageFolderDataset", "PairedFolderDataset",
    "PairedTransform", "SeededDataset", "DefaultSuperResolution", "SuperResolutionFolder", "TooSmallImageWarning",
    "downscale", "superres_pair", "UnreadableImageWarning", "canny_edges", "collate_skipping",
    "fashion_mnist", "read_idx", "sample_rng",
]
