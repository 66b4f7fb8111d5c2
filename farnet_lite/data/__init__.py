"""Data layer: readers of the three public layouts, synthetic stand-ins, the prepared cache, augmentation.

    read_isbi2015, read_hand, read_spine   -> LandmarkDataset (lazy sequence of Sample)
    synthetic_radiograph, write_synthetic_* -> the same layouts without the real data
    prepare_cache / load_cache              -> images resized once to the network input
    random_affine, random_intensity, augment -> batched torch augmentation
"""
from farnet_lite.data.augment import AugmentConfig, augment, random_affine, random_intensity
from farnet_lite.data.cache import CacheError, PreparedCache, load_cache, prepare_cache
from farnet_lite.data.errors import DatasetError
from farnet_lite.data.hand import read_hand
from farnet_lite.data.imageio import image_size, load_grey, save_grey
from farnet_lite.data.isbi2015 import ISBI_LANDMARK_NAMES, read_isbi2015
from farnet_lite.data.sample import LandmarkDataset, MetricSpec, Sample, dataset_summary
from farnet_lite.data.spine import read_spine
from farnet_lite.data.synthetic import (synthetic_radiograph, write_synthetic_datasets, write_synthetic_hand,
                                        write_synthetic_isbi, write_synthetic_spine)

__all__ = [
    "AugmentConfig", "CacheError", "DatasetError", "ISBI_LANDMARK_NAMES", "LandmarkDataset", "MetricSpec",
    "PreparedCache", "Sample", "augment", "dataset_summary", "image_size", "load_cache", "load_grey",
    "prepare_cache", "random_affine", "random_intensity", "read_hand", "read_isbi2015", "read_spine", "save_grey",
    "synthetic_radiograph", "write_synthetic_datasets", "write_synthetic_hand", "write_synthetic_isbi",
    "write_synthetic_spine",
]
