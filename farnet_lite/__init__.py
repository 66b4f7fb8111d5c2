"""farnet-lite: the reference implementation of FARNet that the notebooks teach and import.

The building blocks are re-exported here (their docstrings say which notebook introduces them):

    heatmaps    rescale_points, encode_heatmaps, decode_heatmaps                   notebook 01
    losses      l2_loss, ewc_loss, adaptive_wing_loss, coarse_to_fine_loss         notebooks 02, 05
    backbones   build_backbone, BACKBONES                                          notebook 03
    preprocess  normalize_images                                                   notebook 03
    layers      UpBlock, DownBlock (Fig. 3), HeatmapOutput, count_parameters       notebooks 04, 05
    model       MSFA, FR, FARNet, FARNetConfig                      notebooks 04, 05
    baselines   UNet, FPN;  systems: build_model, SYSTEMS (Table 2)                notebook 05
    metrics     radial_errors, mre_sd, sdr, per_landmark_table, ...                notebook 06
    data        farnet_lite.data: readers, synthetic data, cache, augment          notebook 00

Running things is done through their modules, which are not shadowed here: ``farnet_lite.engine.train.train``,
``farnet_lite.engine.evaluate.evaluate`` / ``predict``, ``farnet_lite.reproduction.reproduce.reproduce`` (notebooks 06-11), the
figures in ``farnet_lite.pictures.plots`` / ``viewer`` (notebook 12) -- or the ``farnet`` command line.
"""
from farnet_lite.backbones import BACKBONES, Backbone, build_backbone
from farnet_lite.baselines import FPN, UNet
from farnet_lite.config import TrainConfig
from farnet_lite.heatmaps import OFFICIAL_ORIGIN, decode_heatmaps, encode_heatmaps, rescale_points
from farnet_lite.layers import DownBlock, HeatmapOutput, UpBlock, count_parameters
from farnet_lite.losses import adaptive_wing_loss, coarse_to_fine_loss, ewc_loss, ewc_weight, l2_loss
from farnet_lite.metrics import (hand_errors_mm, mre_sd, per_landmark_table, radial_errors, sdr, spine_mse_fraction,
                                 spine_pearson, summarize)
from farnet_lite.model import FR, MSFA, FARNet, FARNetConfig
from farnet_lite.preprocess import IMAGENET_MEAN, IMAGENET_STD, normalize_images
from farnet_lite.systems import SYSTEMS, build_model

__version__ = "0.1.0"

__all__ = [
    "BACKBONES", "Backbone", "DownBlock", "FARNet", "FARNetConfig", "FPN", "FR", "HeatmapOutput",
    "IMAGENET_MEAN", "IMAGENET_STD", "MSFA", "OFFICIAL_ORIGIN", "SYSTEMS", "TrainConfig", "UNet", "UpBlock",
    "adaptive_wing_loss", "build_backbone", "build_model", "coarse_to_fine_loss", "count_parameters",
    "decode_heatmaps", "encode_heatmaps", "ewc_loss", "ewc_weight", "hand_errors_mm", "l2_loss", "mre_sd",
    "normalize_images", "per_landmark_table", "radial_errors", "rescale_points", "sdr", "spine_mse_fraction",
    "spine_pearson", "summarize",
]
