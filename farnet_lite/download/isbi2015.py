"""Download the ISBI 2015 cephalometric challenge data (Wang et al., MedIA 2016) from figshare.

    python -m farnet_lite.download.isbi2015 --dest data/isbi2015

Source: figshare article 3471833, shared through the private link 37ec464af8e81ae6ebbf
(landing page https://figshare.com/s/37ec464af8e81ae6ebbf). figshare's download URLs follow two patterns:

    the whole article, one zip:  https://figshare.com/ndownloader/articles/<article_id>?private_link=<link>
    one file of it:              https://figshare.com/ndownloader/files/<file_id>?private_link=<link>

The article zip holds RawImage.rar (the 400 radiographs, 1935x2400 BMP) and AnnotationsByMD.rar (the senior
and junior doctors' landmarks). Python cannot open RAR: an external program (bsdtar, 7z or unrar) extracts
them; the error message says how to install one. figshare publishes no sha256 for the zip, so none is pinned:
pooch logs the hash of what it downloaded and `--sha256` checks a known one.

Manual route (figshare sometimes answers scripts with a browser check page instead of the zip): open the
landing page in a browser, "Download all", then

    python -m farnet_lite.download.isbi2015 --dest data/isbi2015 --archive ~/Downloads/3471833.zip

`--archive` also accepts the two inner archives (RawImage.rar AnnotationsByMD.rar) or zips of the folders.
Resulting layout (what `farnet_lite.data.isbi2015.read_isbi2015` reads):

    data/isbi2015/RawImage/{TrainingData,Test1Data,Test2Data}/NNN.bmp
    data/isbi2015/AnnotationsByMD/{400_senior,400_junior}/NNN.txt
"""
from __future__ import annotations

import shutil
import sys
import zipfile
from pathlib import Path
from typing import Optional, Sequence

from farnet_lite.download._common import (DownloadError, count_files, fetch, find_dir, make_parser,
                                          already_installed, run_cli, staging)
from farnet_lite.download.extract import extract_any

FIGSHARE_ARTICLE = 3471833
FIGSHARE_PRIVATE_LINK = "37ec464af8e81ae6ebbf"
LANDING_PAGE = f"https://figshare.com/s/{FIGSHARE_PRIVATE_LINK}"
DEFAULT_URL = f"https://figshare.com/ndownloader/articles/{FIGSHARE_ARTICLE}?private_link={FIGSHARE_PRIVATE_LINK}"
FILE_URL_PATTERN = "https://figshare.com/ndownloader/files/{file_id}?private_link=" + FIGSHARE_PRIVATE_LINK
SPLIT_FOLDERS = ("TrainingData", "Test1Data", "Test2Data")
OFFICIAL_COUNTS = {"TrainingData": 150, "Test1Data": 150, "Test2Data": 100}
IMAGE_SUFFIXES = (".bmp", ".jpg", ".jpeg", ".png")
ARCHIVE_SUFFIXES = (".rar", ".zip", ".7z", ".tar", ".gz", ".tgz", ".xz", ".bz2")
INNER_NAMES = ("RawImage", "AnnotationsByMD")


def validate_isbi2015(root: Path) -> dict:
    """Check the public layout under `root`; returns image counts per split folder.

    Raises DownloadError naming the first missing piece.
    """
    root = Path(root)
    counts = {}
    for folder in SPLIT_FOLDERS:
        counts[folder] = count_files(root / "RawImage" / folder, IMAGE_SUFFIXES)
        if counts[folder] == 0:
            raise DownloadError(f"{root / 'RawImage' / folder} is missing or has no images; the download is "
                                f"incomplete: rerun with --force.")
    for doctor in ("400_senior", "400_junior"):
        folder = root / "AnnotationsByMD" / doctor
        if count_files(folder, (".txt",)) == 0:
            raise DownloadError(f"{folder} is missing or empty; the annotation archive is incomplete: rerun "
                                f"with --force.")
        for split in ("TrainingData", "Test1Data"):
            for image in (root / "RawImage" / split).iterdir():
                if image.suffix.lower() in IMAGE_SUFFIXES and not (folder / f"{image.stem}.txt").is_file():
                    raise DownloadError(f"Image {image} has no annotation {folder / (image.stem + '.txt')}; "
                                        f"the annotation archive is incomplete: rerun with --force.")
    return counts


def _expand(archive: Path, into: Path) -> None:
    """Extract `archive` into `into`, then any inner RawImage.* / AnnotationsByMD.* archive found in it."""
    extract_any(archive, into)
    for path in sorted(into.rglob("*")):
        if path.is_file() and path.suffix.lower() in ARCHIVE_SUFFIXES and \
                any(path.name.startswith(name) for name in INNER_NAMES):
            extract_any(path, path.with_name(path.name + ".extracted"))
            path.unlink()


def assemble(archives: Sequence[Path], dest: Path, replace: bool = False) -> dict:
    """Build `dest` from the article zip (or the inner archives), atomically; returns the image counts."""
    with staging(dest, replace=replace) as tmp:
        unpack = tmp / "_unpack"
        unpack.mkdir()
        for i, archive in enumerate(archives):
            _expand(Path(archive), unpack / f"{i}")
        for name in INNER_NAMES:
            found = find_dir(unpack, name)
            if found is None and name == "AnnotationsByMD":
                senior = find_dir(unpack, "400_senior")
                found = senior.parent if senior is not None else None
            if found is None and name == "RawImage":
                training = find_dir(unpack, "TrainingData")
                found = training.parent if training is not None else None
            if found is None:
                raise DownloadError(f"No {name} folder in {', '.join(str(a) for a in archives)}; this is not the "
                                    f"ISBI 2015 archive (expected RawImage.rar and AnnotationsByMD.rar inside).")
            shutil.move(str(found), str(tmp / name))
        shutil.rmtree(unpack)
        counts = validate_isbi2015(tmp)
    return counts


def download_isbi2015(dest: str | Path = "data/isbi2015", url: Optional[str] = None,
                      archives: Optional[Sequence[str | Path]] = None, sha256: Optional[str] = None,
                      cache_dir: Optional[str | Path] = None, force: bool = False, progress: bool = True) -> Path:
    """Download (or take `archives`), extract and verify ISBI 2015 into `dest`; returns `dest`.

 Skips everything when `dest` already holds a valid copy (unless `force`).
    """
    dest = Path(dest)
    if already_installed(dest, "ISBI 2015", lambda: validate_isbi2015(dest), force):
        return dest
    if archives:
        paths = [Path(a) for a in archives]
    else:
        url = url or DEFAULT_URL
        paths = [fetch(url, "isbi2015_figshare_3471833.zip", sha256=sha256, cache_dir=cache_dir,
                       progress=progress)]
        if not zipfile.is_zipfile(paths[0]):
            paths[0].unlink()
            raise DownloadError(f"{url} did not return a zip (figshare probably served its browser check "
                                f"page); download it in a browser from {LANDING_PAGE} and rerun with "
                                f"--archive PATH_TO_ZIP.")
    counts = assemble(paths, dest, replace=force)
    official = all(counts[k] == v for k, v in OFFICIAL_COUNTS.items())
    print(f"ISBI 2015 ready in {dest}: " + ", ".join(f"{k} {v}" for k, v in counts.items())
          + ("" if official else f" (the official release has {OFFICIAL_COUNTS})"))
    return dest


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = make_parser("python -m farnet_lite.download.isbi2015", __doc__, "data/isbi2015",
                         f"article zip URL (default: {DEFAULT_URL})")
    args = parser.parse_args(argv)
    return run_cli(lambda a: download_isbi2015(a.dest, a.url, a.archive, a.sha256, a.cache, a.force,
                                               not a.quiet), args)


if __name__ == "__main__":
    sys.exit(main())
