"""From a config to prepared, in-memory data: which files a split is, synthetic data on demand, the cache.

Split names, readers, folds and synthetic stand-ins are each dataset's :class:`~farnet_lite.datasets.DatasetSpec`
(``splits``, ``reader``, ``folds``, ``synthetic_writer``); this module turns a config into an opened split.

Every split is resized once into a prepared cache (``farnet_lite.data.cache``: uint8 images at the network input
size, landmarks moved to that grid) stored under ``cache_dir/prepared``; its file name carries a hash of the
files it was made from, so a changed dataset makes a new cache instead of silently reusing an old one.
"""
from __future__ import annotations

import errno
import hashlib
from contextlib import contextmanager
from pathlib import Path

from farnet_lite.config import TrainConfig
from farnet_lite.data.cache import load_cache, prepare_cache
from farnet_lite.download._common import default_cache_dir
from farnet_lite.engine.distributed import DistInfo, barrier, broadcast_object


def cache_dir(config: TrainConfig) -> Path:
    return Path(config.cache_dir) if config.cache_dir else default_cache_dir()


WRITE_ERRORS = (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR, errno.EEXIST)
"""What a cache folder that cannot be written raises (read-only HOME, no permission, full disk, a file in the way)."""


@contextmanager
def writing_cache(folder: Path):
    """An OSError writing under ``folder`` (the cache dir) becomes one sentence naming the folder and the fix:
    ``--cache-dir DIR`` or the ``FARNET_CACHE`` environment variable (the default, ``~/.cache/farnet_lite``,
    is read-only on some machines)."""
    try:
        yield
    except OSError as err:
        name = None if err.filename is None else Path(err.filename).absolute()
        top = folder.absolute()
        inside = name is None or name == top or top in name.parents or name in top.parents   # or a folder above
        if err.errno not in WRITE_ERRORS or not inside:
            raise
        reason = err.strerror or str(err)
        where = f": {err.filename}" if err.filename is not None else ""
        raise OSError(f"Cannot write the cache folder {folder} ({reason}{where}); choose a writable folder with "
                      f"--cache-dir DIR or the FARNET_CACHE environment variable.") from err


def data_root(config: TrainConfig) -> Path:
    """The dataset folder: ``config.data_root``, or (synthetic datasets only) a folder under the cache dir, where
    the spec's synthetic writer puts its stand-in on first use (idempotent and atomic)."""
    spec = config.spec
    if config.data_root:
        root = Path(config.data_root)
        if not root.exists():
            raise FileNotFoundError(f"Data root {root} does not exist; pass the {spec.name} dataset's folder with "
                                    f"--data-root (downloaders: python -m farnet_lite.download.<dataset>).")
        return root
    if spec.synthetic:
        with writing_cache(cache_dir(config)):
            return Path(spec.synthetic_writer(cache_dir(config) / "synthetic" / spec.layout))
    hint = f"; use --dataset {spec.synthetic_name} to try without data" if spec.synthetic_name else ""
    raise ValueError(f"Dataset {config.dataset!r} needs --data-root (the folder of the downloaded dataset){hint}.")


def open_split(config: TrainConfig, split: str):
    """The ``LandmarkDataset`` of one split of ``config.dataset``, read by its spec's reader.
    """
    return config.spec.reader(data_root(config), split, fold=config.fold, annotation=config.annotation)


def _cache_path(config: TrainConfig, split: str) -> Path:
    """``cache_dir/prepared/<dataset>-<split>-<H>x<W>-<hash>.npz``; the hash tells data roots, ISBI annotation
    and cross-validation folds apart (``prepare_cache`` itself rebuilds a file whose labels or ids changed)."""
    key = repr((str(data_root(config).resolve()), config.annotation, config.fold))
    digest = hashlib.sha1(key.encode()).hexdigest()[:10]
    height, width = config.input_size
    return cache_dir(config) / "prepared" / f"{config.dataset}-{split}-{height}x{width}-{digest}.npz"


def prepared_split(config: TrainConfig, split: str, dist_info: DistInfo = DistInfo()):
    """The ``PreparedCache`` of a split at ``config.input_size``, preparing it on first use.

    Under torchrun only rank 0 writes the cache; the others wait for it.
    """
    path = None
    if dist_info.is_main:
        dataset = open_split(config, split)
        if len(dataset) == 0:
            raise ValueError(f"Split {split!r} of {config.dataset} under {data_root(config)} has no images; "
                             f"check --data-root and the split name.")
        workers = 0 if len(dataset) <= 32 else None   # a process pool costs more than it saves on a few images
        with writing_cache(cache_dir(config)):
            path = prepare_cache(dataset, tuple(config.input_size), _cache_path(config, split),
                                 num_workers=workers, progress=config.progress)
    if dist_info.enabled:
        path = broadcast_object(path, dist_info)
        barrier(dist_info)
    return load_cache(path)
