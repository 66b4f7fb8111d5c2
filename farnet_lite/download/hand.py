"""Download the Digital Hand Atlas radiographs with the 37 landmarks of Payer et al. (MedIA 2019).

    python -m farnet_lite.download.hand --dest data/hand_dha

Two sources:

* The annotation setup of Payer et al. (``all.csv``: ``id,x1,y1,...,x37,y37`` in original pixels, and the
  3-fold cross-validation ``cv/set{1,2,3}/{train,test}.txt``) from the GitHub repository
  christianpayer/MedicalDataAugmentationTool-HeatmapRegression, folder ``hand_xray/hand_xray_dataset/setup/``,
  fetched from raw.githubusercontent.com (`--setup-url` overrides the base URL).
* The images: the JPEGs of the Digital Hand Atlas (BAAweb, USC Image Processing and Informatics Lab), served as
  a directory tree ``JPEGimages/<race+sex>/<race+sex+age>/<id>.jpg`` (e.g. ``ASIF/ASIF04/5132.jpg``). The
  downloader walks that tree's index pages and fetches every image whose id is in ``all.csv`` (`--url`
  overrides the tree's URL). The server is often down.

Manual route when it is down: get the atlas JPEGs elsewhere (https://ipilab.usc.edu/research/baaweb/ or a
copy), put them in one zip or tar (any folder structure; files named ``<id>.jpg``) and run

    python -m farnet_lite.download.hand --dest data/hand_dha --archive dha_images.zip

If raw.githubusercontent.com is unreachable, clone or download that repository by other means and pass
``--setup-dir path/to/hand_xray_dataset/setup``.

Resulting layout (what `farnet_lite.data.hand.read_hand` reads): ``data/hand_dha/images/<id>.jpg`` and
``data/hand_dha/setup/{all.csv, cv/set*/{train,test}.txt}``.
"""
from __future__ import annotations

import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path
from typing import Iterable, Optional, Sequence
from urllib.error import URLError
from urllib.parse import urljoin, urlparse
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from farnet_lite.download._common import (USER_AGENT, DownloadError, fetch, make_parser, run_cli,
                                          already_installed, staging)
from farnet_lite.download.extract import extract_any

SETUP_URL = ("https://raw.githubusercontent.com/christianpayer/MedicalDataAugmentationTool-HeatmapRegression/"
             "master/hand_xray/hand_xray_dataset/setup/")
SETUP_FILES = ("all.csv",) + tuple(f"cv/set{k}/{s}.txt" for k in (1, 2, 3) for s in ("train", "test"))
IMAGES_URL = "http://www.ipilab.org/BAAweb/JPEGimages/"
MANUAL_ROUTE = ("download the atlas JPEGs by hand (https://ipilab.usc.edu/research/baaweb/ or a copy), put "
                "them in one zip and rerun with --archive that.zip")
NUM_LANDMARKS = 37


def read_setup_ids(csv_path: Path) -> list[str]:
    """Image ids of ``all.csv`` (first column), checking that each row has 1 + 2 * 37 values."""
    ids = []
    for number, line in enumerate(Path(csv_path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        values = line.split(",")
        if len(values) != 1 + 2 * NUM_LANDMARKS:
            raise DownloadError(f"{csv_path} line {number} has {len(values)} values, expected "
                                f"{1 + 2 * NUM_LANDMARKS}; the setup download is corrupt: rerun with --force.")
        ids.append(values[0].strip())
    return ids


class _LinkParser(HTMLParser):
    def __init__(self):
        super().__init__()
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links += [value for key, value in attrs if key == "href" and value]


def list_links(url: str, timeout: float = 30.0) -> list[str]:
    """Absolute URLs of the links on an HTML directory-index page."""
    with urlopen(Request(url, headers={"User-Agent": USER_AGENT}), timeout=timeout) as response:
        parser = _LinkParser()
        parser.feed(response.read().decode("utf-8", "replace"))
    return [urljoin(url, link) for link in parser.links]


def crawl_images(base_url: str, wanted: Iterable[str], max_depth: int = 3, max_pages: int = 2000) -> dict:
    """id -> URL of every ``<id>.jpg`` below `base_url` (an index tree) whose id is in `wanted`.

    Only links that stay below `base_url` are followed (no parent or sort links), at most `max_depth`
    folders deep and `max_pages` index pages in all.
    """
    wanted = set(wanted)
    base = base_url if base_url.endswith("/") else base_url + "/"
    found, queue, seen = {}, [(base, 0)], {base}
    while queue and len(seen) <= max_pages:
        url, depth = queue.pop(0)
        for link in list_links(url):
            link = link.split("#")[0]
            if not link.startswith(base) or "?" in link or link in seen:
                continue
            name = Path(urlparse(link).path).name
            if link.endswith("/") and depth < max_depth:
                seen.add(link)
                queue.append((link, depth + 1))
            elif name.lower().endswith((".jpg", ".jpeg")) and Path(name).stem in wanted:
                found.setdefault(Path(name).stem, link)
    return found


def _images_from_archives(archives: Sequence[Path], wanted: set, unpack: Path, images: Path) -> int:
    for i, archive in enumerate(archives):
        extract_any(archive, unpack / str(i))
    count = 0
    for path in sorted(unpack.rglob("*")):
        if path.is_file() and path.suffix.lower() in (".jpg", ".jpeg") and path.stem in wanted:
            target = images / f"{path.stem}.jpg"
            if not target.exists():
                shutil.move(str(path), str(target))
                count += 1
    return count


def _images_from_server(url: str, wanted: set, images: Path, cache_dir, progress: bool, workers: int) -> int:
    try:
        urls = crawl_images(url, wanted)
    except (URLError, OSError) as err:
        raise DownloadError(f"The Digital Hand Atlas server {url} cannot be reached "
                            f"({getattr(err, 'reason', err)}); {MANUAL_ROUTE}.") from err
    if not urls:
        raise DownloadError(f"No image of all.csv was found below {url}; {MANUAL_ROUTE}.")

    def get(item):
        image_id, image_url = item
        cached = fetch(image_url, f"hand_dha/{image_id}.jpg", cache_dir=cache_dir, progress=False)
        shutil.copyfile(cached, images / f"{image_id}.jpg")

    with ThreadPoolExecutor(workers) as pool:
        list(tqdm(pool.map(get, sorted(urls.items())), total=len(urls), desc="hand images",
                  disable=not progress, unit="img"))
    return len(urls)


def validate_hand(root: Path, require_images: bool = True) -> dict:
    """Check ``setup/`` and ``images/`` under `root`; returns counts (ids, images, cv ids without image).

    Raises DownloadError naming the first missing piece.
    """
    root = Path(root)
    for name in SETUP_FILES:
        if not (root / "setup" / name).is_file():
            raise DownloadError(f"{root / 'setup' / name} is missing; the setup download is incomplete: rerun "
                                f"with --force.")
    ids = set(read_setup_ids(root / "setup" / "all.csv"))
    present = {p.stem for p in (root / "images").glob("*.jpg")} if (root / "images").is_dir() else set()
    if require_images and not present:
        raise DownloadError(f"{root / 'images'} holds no image; {MANUAL_ROUTE}.")
    cv_ids = set()
    for name in SETUP_FILES[1:]:
        cv_ids |= {line.strip() for line in (root / "setup" / name).read_text().splitlines() if line.strip()}
    return {"ids": len(ids), "images": len(present & ids), "cv_without_image": len(cv_ids - present)}


def download_hand(dest: str | Path = "data/hand_dha", url: Optional[str] = None,
                  setup_url: Optional[str] = None, archives: Optional[Sequence[str | Path]] = None,
                  skip_images: bool = False, cache_dir=None, force: bool = False, progress: bool = True,
                  workers: int = 4, setup_dir: Optional[str | Path] = None) -> Path:
    """Fetch Payer's setup files and the DHA images into `dest` (atomically); returns `dest`.

 Skips everything when `dest` already holds a valid copy (unless `force`).
    `setup_dir`: a local copy of the setup folder (all.csv, cv/) to use instead of downloading it.
    """
    dest = Path(dest)
    if already_installed(dest, "the hand atlas", lambda: validate_hand(dest, require_images=not skip_images), force,
                         show_counts=True):
        return dest
    setup_base = setup_url or SETUP_URL
    setup_base = setup_base if setup_base.endswith("/") else setup_base + "/"
    with staging(dest, replace=force) as tmp:
        for name in SETUP_FILES:
            if setup_dir is not None:
                cached = Path(setup_dir) / name
                if not cached.is_file():
                    raise DownloadError(f"{cached} does not exist; --setup-dir must hold all.csv and "
                                        f"cv/set{{1,2,3}}/{{train,test}}.txt.")
            else:
                cached = fetch(setup_base + name, f"hand_setup/{name}", cache_dir=cache_dir, progress=False)
            target = tmp / "setup" / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(cached, target)
        wanted = set(read_setup_ids(tmp / "setup" / "all.csv"))
        images = tmp / "images"
        images.mkdir()
        if archives:
            _images_from_archives([Path(a) for a in archives], wanted, tmp / "_unpack", images)
            shutil.rmtree(tmp / "_unpack", ignore_errors=True)
        elif not skip_images:
            _images_from_server(url or IMAGES_URL, wanted, images, cache_dir, progress, workers)
        counts = validate_hand(tmp, require_images=not skip_images)
    note = f" ({counts['cv_without_image']} ids of the cross-validation have no image)" \
        if counts["cv_without_image"] else ""
    print(f"Hand atlas ready in {dest}: {counts['images']} images of {counts['ids']} annotated ids{note}.")
    return dest


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = make_parser("python -m farnet_lite.download.hand", __doc__, "data/hand_dha",
                         f"URL of the DHA JPEGimages tree (default: {IMAGES_URL})", sha256=False)
    parser.add_argument("--setup-url", default=None, help=f"base URL of the setup files (default: {SETUP_URL})")
    parser.add_argument("--setup-dir", default=None,
                        help="local copy of the setup folder (all.csv, cv/) instead of downloading it")
    parser.add_argument("--skip-images", action="store_true", help="only fetch the annotation setup")
    parser.add_argument("--workers", type=int, default=4, help="parallel image downloads")
    args = parser.parse_args(argv)
    return run_cli(lambda a: download_hand(a.dest, a.url, a.setup_url, a.archive, a.skip_images, a.cache,
                                           a.force, not a.quiet, a.workers, a.setup_dir), args)


if __name__ == "__main__":
    sys.exit(main())
