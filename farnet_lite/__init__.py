"""farnet-lite: the reference implementation of FARNet that the notebooks teach and import.

Each public name below is introduced in a notebook (its docstring says which):

    heatmaps   rescale_points, encode_heatmaps, decode_heatmaps           notebook 01
    losses     l2_loss, ewc_loss, adaptive_wing_loss, coarse_to_fine_loss notebooks 02, 05
    backbones  build_backbone, BACKBONES                                   notebook 03
    model      MSFA, FeatureRefinement, FARNet, build_model, UNet, FPN     notebooks 04, 05
    metrics    radial_errors, mre_sd, sdr, per_landmark_table, ...         notebook 06
    engine     TrainConfig, train, evaluate, predict                       notebook 06
    data       farnet_lite.data: readers, synthetic data, cache, augment   notebook 00
    tables     farnet_lite.experiments / tables: Tables 1-5, reproduce     notebooks 07-11
    figures    farnet_lite.plots / viewer: Figs. 1, 4, 5, curves, viewer   notebook 12
"""
from farnet_lite.backbones import BACKBONES, Backbone, build_backbone
from farnet_lite.baselines import FPN, UNet
from farnet_lite.config import TrainConfig
from farnet_lite.evaluate import evaluate, predict
from farnet_lite.heatmaps import OFFICIAL_ORIGIN, decode_heatmaps, encode_heatmaps, rescale_points
from farnet_lite.losses import adaptive_wing_loss, coarse_to_fine_loss, ewc_loss, ewc_weight, l2_loss
from farnet_lite.metrics import (hand_errors_mm, mre_sd, per_landmark_table, radial_errors, sdr,
                                 spine_mse_fraction, spine_pearson, summarize)
from farnet_lite.model import (IMAGENET_MEAN, IMAGENET_STD, MSFA, SYSTEMS, FARNet, FARNetConfig, FeatureRefinement,
                               HeatmapOutput, build_model, count_parameters, normalize_images)
from farnet_lite.train import train

__version__ = "0.1.0"

__all__ = [
    "BACKBONES", "Backbone", "FARNet", "FARNetConfig", "FPN", "FeatureRefinement", "HeatmapOutput", "IMAGENET_MEAN",
    "IMAGENET_STD", "MSFA", "OFFICIAL_ORIGIN", "SYSTEMS", "TrainConfig", "UNet", "adaptive_wing_loss",
    "build_backbone", "build_model", "coarse_to_fine_loss", "count_parameters", "decode_heatmaps", "encode_heatmaps",
    "evaluate", "ewc_loss", "ewc_weight", "hand_errors_mm", "l2_loss", "mre_sd", "normalize_images",
    "per_landmark_table", "predict", "radial_errors", "rescale_points", "sdr", "spine_mse_fraction",
    "spine_pearson", "summarize", "train",
]
