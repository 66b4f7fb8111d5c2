"""Install the AASCE 2019 spine radiographs (SpineWeb dataset 16, "boostnet_labeldata"; Wu et al. 2017).

    python -m farnet_lite.download.spine --dest data/spine_aasce --archive boostnet_labeldata.zip

There is no download URL we can rely on: SpineWeb (http://spineweb.digitalimaginggroup.ca/, "Dataset 16: 609
spinal anterior-posterior x-ray images", the AASCE 2019 challenge data) has been offline for years, and the
copies that circulate (GitHub repositories and Kaggle datasets found by searching "boostnet_labeldata") are
third-party uploads whose licence and completeness you must check yourself. So the manual route is the main
one: obtain the archive (zip, tar or rar) holding the folder ``boostnet_labeldata/`` and pass it with
`--archive`; or, if you know a URL of such an archive, `--url URL` (optionally with `--sha256`) downloads it
with pooch first. The archive is extracted safely, the layout is verified, and only then is it moved to

    data/spine_aasce/boostnet_labeldata/data/{training,test}/*.jpg            (481 + 128 images)
    data/spine_aasce/boostnet_labeldata/labels/training/<image>.jpg.mat       (variable p2, 68 x 2)
    data/spine_aasce/boostnet_labeldata/labels/{training,test}/filenames.csv  (+ landmarks.csv, angles.csv)

which `farnet_lite.data.spine.read_spine` reads (its root may be either folder). Test labels are not public.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Optional, Sequence

from farnet_lite.download._common import (DownloadError, count_files, fetch, make_parser, run_cli,
                                          already_installed, staging)
from farnet_lite.download.extract import extract_any

SPINEWEB_PAGE = ("http://spineweb.digitalimaginggroup.ca/Index.php?n=Main.Datasets"
                 "#Dataset_16.3A_609_spinal_anterior-posterior_x-ray_images")
FOLDER = "boostnet_labeldata"
OFFICIAL_COUNTS = {"training": 481, "test": 128}
MANUAL_ROUTE = (f"SpineWeb dataset 16 ({SPINEWEB_PAGE}) is offline, so obtain an archive of the folder "
                f"{FOLDER}/ yourself and pass it with --archive (or its URL with --url); see --help")


def find_spine_root(folder: Path) -> Optional[Path]:
    """The shallowest folder below `folder` holding ``data/training`` and ``labels/training``."""
    candidates = [p.parent.parent for p in Path(folder).rglob("training")
                  if p.is_dir() and p.parent.name == "data" and (p.parent.parent / "labels" / "training").is_dir()]
    return min(candidates, key=lambda p: len(p.parts)) if candidates else None


def validate_spine(root: Path) -> dict:
    """Check the boostnet_labeldata layout at `root`; returns the image counts per split.

    Raises DownloadError naming the first missing piece.
    """
    root = Path(root)
    counts = {split: count_files(root / "data" / split, (".jpg", ".jpeg")) for split in ("training", "test")}
    if counts["training"] == 0:
        raise DownloadError(f"{root / 'data' / 'training'} is missing or has no .jpg; the archive is not "
                            f"boostnet_labeldata or is incomplete.")
    for name in ("filenames.csv", "landmarks.csv", "angles.csv"):
        if not (root / "labels" / "training" / name).is_file():
            raise DownloadError(f"{root / 'labels' / 'training' / name} is missing; the archive is incomplete.")
    for image in (root / "data" / "training").iterdir():
        label = root / "labels" / "training" / f"{image.name}.mat"
        if image.suffix.lower() in (".jpg", ".jpeg") and not label.is_file():
            raise DownloadError(f"Image {image} has no label file {label}; the archive is incomplete.")
    if counts["test"] and not (root / "labels" / "test" / "filenames.csv").is_file():
        raise DownloadError(f"{root / 'labels' / 'test' / 'filenames.csv'} is missing; the archive is incomplete.")
    return counts


def install_spine(dest: str | Path = "data/spine_aasce", archives: Optional[Sequence[str | Path]] = None,
                  url: Optional[str] = None, sha256: Optional[str] = None, cache_dir=None, force: bool = False,
                  progress: bool = True) -> Path:
    """Extract (after downloading `url`, if given) the spine archive into ``dest/boostnet_labeldata``.

 Returns that folder. Skips everything when it already holds a valid copy.
    """
    dest = Path(dest)
    target = dest / FOLDER
    if already_installed(target, "the spine dataset", lambda: validate_spine(target), force, synthetic_check=dest):
        return target
    if archives:
        paths = [Path(a) for a in archives]
    elif url:
        paths = [fetch(url, f"spine_{Path(url.split('?')[0]).name or 'archive'}", sha256=sha256,
                       cache_dir=cache_dir, progress=progress)]
    else:
        raise DownloadError(f"No --archive or --url given: {MANUAL_ROUTE}.")
    with staging(target, replace=force) as tmp:
        unpack = tmp / "_unpack"
        unpack.mkdir()
        for i, archive in enumerate(paths):
            extract_any(archive, unpack / str(i))
        found = find_spine_root(unpack)
        if found is None:
            raise DownloadError(f"No folder with data/training and labels/training in "
                                f"{', '.join(map(str, paths))}; this is not the {FOLDER} archive.")
        for child in found.iterdir():
            shutil.move(str(child), str(tmp / child.name))
        shutil.rmtree(unpack)
        counts = validate_spine(tmp)
    official = counts == OFFICIAL_COUNTS
    print(f"Spine dataset ready in {target}: training {counts['training']}, test {counts['test']} images"
          + ("" if official else f" (the public release has {OFFICIAL_COUNTS})"))
    return target


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = make_parser("python -m farnet_lite.download.spine", __doc__, "data/spine_aasce",
                         "URL of an archive of boostnet_labeldata (no default: SpineWeb is offline)")
    args = parser.parse_args(argv)
    return run_cli(lambda a: install_spine(a.dest, a.archive, a.url, a.sha256, a.cache, a.force, not a.quiet),
                   args)


if __name__ == "__main__":
    sys.exit(main())
