"""TrainConfig and the DatasetSpecs: the dataset's own defaults, validation at construction, field metadata."""
import dataclasses

import numpy as np
import pytest

from farnet_lite import metrics
from farnet_lite.backbones import BACKBONES
from farnet_lite.config import GROUPS, TrainConfig, config_fields
from farnet_lite.data import synthetic
from farnet_lite.datasets import DATASETS, real_datasets
from farnet_lite.engine.options import parse_kwargs
from farnet_lite.systems import SYSTEMS, build_model_from_config


@pytest.mark.parametrize("name, size, augment, k", [("isbi2015", (800, 640), False, 19),
                                                     ("hand", (512, 512), True, 37),
                                                     ("spine", (1024, 512), True, 68),
                                                     ("synthetic-hand", (128, 128), True, 37)])
def test_a_plain_config_gets_its_datasets_values(name, size, augment, k):
    config = TrainConfig(dataset=name)               # not a preset: the dataset's spec fills the unset fields
    spec = DATASETS[name]
    assert (config.input_size, config.augment, config.num_landmarks) == (size, augment, k)
    assert (config.train_split, config.val_split, config.eval_splits) == (spec.train_split, spec.val_split,
                                                                          spec.eval_splits)
    if name != "isbi2015":
        assert config.val_split != "test1" and "test1" not in config.eval_splits     # not ISBI's


def test_explicit_values_win_over_the_datasets():
    config = TrainConfig(dataset="hand", input_size=[256, 128], augment=False, eval_splits=["all"], val_split="")
    assert (config.input_size, config.augment, config.eval_splits, config.val_split) == ((256, 128), False,
                                                                                          ("all",), "")


@pytest.mark.parametrize("field, value, choices", [("dataset", "mnist", tuple(DATASETS)),
                                                   ("loss", "mse", ("ewc", "l2", "aw"))])
def test_a_misspelt_name_fails_at_construction_listing_the_choices(field, value, choices):
    with pytest.raises(ValueError) as err:
        TrainConfig(**{field: value})
    text = str(err.value)
    assert "\n" not in text and text.count(". ") == 0 and repr(value) in text
    assert all(choice in text for choice in choices)


@pytest.mark.parametrize("field, value, choices", [("system", "farnet", SYSTEMS),
                                                   ("backbone", "resnet50", BACKBONES)])
def test_a_misspelt_model_name_fails_where_the_model_is_built(field, value, choices):
    """The config imports no model module: system and backbone are checked by farnet_lite.systems (before any
    weight is made), and the command line offers their choices."""
    config = TrainConfig(**{field: value})
    with pytest.raises(ValueError) as err:
        build_model_from_config(config, num_landmarks=19)
    text = str(err.value)
    assert "\n" not in text and repr(value) in text and all(choice in text for choice in choices)
    assert parse_kwargs(field)["choices"] == choices


def test_splits_and_folds_are_checked_against_the_dataset():
    with pytest.raises(ValueError, match="hand has no split 'test1'; its splits are train, test, all"):
        TrainConfig(dataset="hand", val_split="test1")
    with pytest.raises(ValueError, match="no split 'cv-val'"):
        TrainConfig(dataset="isbi2015", eval_splits=("test1", "cv-val"))
    with pytest.raises(ValueError, match="fold must be between 1 and 3 for hand"):
        TrainConfig(dataset="hand", fold=4)
    assert TrainConfig(dataset="spine", fold=5).fold == 5
    with pytest.raises(ValueError, match="between 1 and 1"):
        TrainConfig(dataset="isbi2015", fold=2)


def test_every_field_carries_help_and_every_choice_validates():
    for name, f in config_fields().items():
        assert f.metadata.get("help"), name
        assert "default" not in f.metadata["help"], name       # the CLI adds the default, once
    with_choices = {name for name, f in config_fields().items() if "choices" in f.metadata}
    assert {"dataset", "loss", "optimizer", "lr_schedule", "precision", "decode",
            "data_on_device", "annotation"} <= with_choices
    assert {f.metadata["group"] for f in config_fields().values()} == set(GROUPS)
    import farnet_lite.cli as cli
    assert not hasattr(cli, "HELP")                            # help text lives in the config only


def test_save_is_atomic_and_round_trips(tmp_path):
    config = TrainConfig.preset("spine", "fast", fold=3, eval_splits=["test"])
    path = config.save(tmp_path / "run" / "config.json")
    assert TrainConfig.load(path) == config and [p.name for p in path.parent.iterdir()] == ["config.json"]
    again = TrainConfig.from_dict(dict(config.to_dict(), dataset="hand", fold=1, train_split=None,
                                       val_split=None, eval_splits=None, input_size=None, augment=None))
    assert again.eval_splits == ("test",) and again.input_size == (512, 512)


def test_metric_columns_are_the_keys_summarize_writes():
    errors = np.abs(np.random.default_rng(0).normal(size=(3, 4))) * 3
    for name in ("isbi2015", "hand"):
        spec = DATASETS[name]
        keys = [key for key, _ in spec.metric_columns]
        assert set(keys) <= set(metrics.summarize(errors, spec.radii)), name
    assert [k for k, _ in DATASETS["isbi2015"].metric_columns] == ["mre", "sd", "sdr_2", "sdr_2.5", "sdr_3",
                                                                    "sdr_4"]
    assert [k for k, _ in DATASETS["spine"].metric_columns] == ["mse_fraction", "pearson"]


def test_each_real_dataset_has_its_stand_in_and_folder(tmp_path, monkeypatch):
    for name in real_datasets():
        spec = DATASETS[name]
        stand_in = DATASETS[spec.synthetic_name]
        assert stand_in.synthetic and not spec.synthetic and stand_in.synthetic_name == spec.synthetic_name
        same = ("layout", "reader", "num_landmarks", "splits", "metric", "radii", "folds", "augmentation")
        assert all(getattr(stand_in, f) == getattr(spec, f) for f in same), name
    for writer in ("write_synthetic_isbi", "write_synthetic_hand", "write_synthetic_spine"):
        monkeypatch.setattr(synthetic, writer, lambda root, seed=0: root)     # only the folder names matter
    written = synthetic.write_synthetic_datasets(tmp_path)       # the folder names of a data root
    assert {name: path.name for name, path in written.items()} == {n: DATASETS[n].folder for n in real_datasets()}


def test_specs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DATASETS["hand"].input_size = (64, 64)


def test_the_spec_scores_as_its_reader_labels(tmp_path):
    for name in real_datasets():                  # tiny stand-ins, read back by the spec's own reader
        spec = DATASETS[name]
        root = spec.synthetic_writer(tmp_path / spec.folder, **dict(spec.quick_counts))
        dataset = spec.reader(root, spec.eval_splits[0], fold=1, annotation="mean")
        assert dataset.metric == spec.metric and dataset.num_landmarks == spec.num_landmarks, name


def test_precision_is_auto_unless_a_preset_reproduces_numbers():
    """auto (bf16 where native, farnet_lite.engine.runtime.resolve_precision) by default and in ``fast``; fp32 in the
    presets whose numbers must be the same on every machine (paper, official, demo, quick)."""
    assert TrainConfig().precision == "auto" and TrainConfig.preset("isbi2015", "fast").precision == "auto"
    for setting in ("paper", "official", "demo", "quick"):
        assert TrainConfig.preset("isbi2015", setting).precision == "fp32", setting
    assert TrainConfig.preset("isbi2015", "paper", precision="auto").precision == "auto"


def test_checkpoint_minutes_default_and_check():
    assert TrainConfig().checkpoint_minutes == 10.0 and TrainConfig(checkpoint_minutes=0).checkpoint_minutes == 0
    with pytest.raises(ValueError, match="checkpoint_minutes must be 0"):
        TrainConfig(checkpoint_minutes=-1)


def test_a_path_object_for_a_path_field_is_kept_as_its_text(tmp_path):
    """``TrainConfig(data_root=Path(...))`` (what notebooks pass) is the folder's text, and saves as JSON."""
    config = TrainConfig(dataset="synthetic-isbi", data_root=tmp_path / "isbi", cache_dir=tmp_path / "c",
                         output_dir=tmp_path / "run")
    assert (config.data_root, config.cache_dir, config.output_dir) == (
        str(tmp_path / "isbi"), str(tmp_path / "c"), str(tmp_path / "run"))
    assert TrainConfig.from_json(config.to_json()) == config


def test_sigma_in_the_papers_grid_is_scaled_to_the_training_grid():
    """``sigma_scale="paper"``: sigma 10 of ISBI's 800x640 is 4 px at 320x256 and 2 px at 160x128, the same width
    in the image; ``"output"`` (the default, the official code's) keeps 10 px at any size."""
    paper = TrainConfig(dataset="isbi2015", data_root="x", input_size=(320, 256), sigma_scale="paper")
    assert paper.target_sigma == pytest.approx(4.0)
    assert dataclasses.replace(paper, input_size=(160, 128)).target_sigma == pytest.approx(2.0)
    assert dataclasses.replace(paper, input_size=(800, 640)).target_sigma == pytest.approx(10.0)
    assert TrainConfig(dataset="isbi2015", data_root="x", input_size=(320, 256)).target_sigma == 10.0
    spine = TrainConfig(dataset="spine", data_root="x", input_size=(384, 192), sigma=10.0, sigma_scale="paper")
    assert spine.target_sigma == pytest.approx(10 * 384 / 1024)
    with pytest.raises(ValueError, match="sigma_scale"):
        TrainConfig(dataset="isbi2015", sigma_scale="mm")


def test_the_run_trains_and_decodes_with_the_target_sigma(monkeypatch, tmp_path):
    """train() draws its targets with ``target_sigma`` and predict_batch decodes with it (not the raw sigma)."""
    from farnet_lite.engine import train as train_module
    from farnet_lite.heatmaps import HeatmapCodec
    seen = {}
    real_loss, real_init = train_module.coarse_to_fine_loss, HeatmapCodec.__init__

    def loss(*args, sigma, **kwargs):
        seen.setdefault("loss", sigma)
        return real_loss(*args, sigma=sigma, **kwargs)

    def init(self, input_size, heatmap_size, sigma, *args, **kwargs):
        seen.setdefault("codec", sigma)
        real_init(self, input_size, heatmap_size, sigma, *args, **kwargs)

    monkeypatch.setattr(train_module, "coarse_to_fine_loss", loss)
    monkeypatch.setattr(HeatmapCodec, "__init__", init)
    from engine_helpers import tiny_config
    config = tiny_config(tmp_path, epochs=1, sigma=20.0, sigma_scale="paper", save_checkpoints=False)
    train_module.train(config)
    assert config.target_sigma == pytest.approx(20.0 * 32 / 160)        # the stand-in's paper grid: 160x128
    assert seen == {"loss": pytest.approx(config.target_sigma), "codec": pytest.approx(config.target_sigma)}
