"""Downloaders (farnet_lite/download/): offline, against a local HTTP server on 127.0.0.1 serving tiny archives."""
import argparse
import errno
import hashlib
import io
import json
import shutil
import struct
import subprocess
import sys
import tarfile
import threading
import zipfile
import zlib
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from farnet_lite.download import _common, extract, hand, isbi2015, spine
from farnet_lite.download._common import DownloadError, UnsafeArchiveError, fetch
from farnet_lite.download.extract import extract_any, safe_extract

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"


# ----------------------------------------------------------------------------- local server

class Handler(SimpleHTTPRequestHandler):
    """Static files, optional HTTP Range support, every request's headers recorded."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        self.server.requests.append((self.path, dict(self.headers)))
        byte_range = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if byte_range and self.server.range_support and path.is_file():
            start = int(byte_range.split("=")[1].split("-")[0])
            data = path.read_bytes()[start:]
            self.send_response(206)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Range", f"bytes {start}-{start + len(data) - 1}/{path.stat().st_size}")
            self.end_headers()
            self.wfile.write(data)
            return
        super().do_GET()


@pytest.fixture
def server(tmp_path):
    """(root folder, base URL, server) of a server on 127.0.0.1:<free port>, shut down after the test."""
    root = tmp_path / "www"
    root.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, directory=str(root)))
    httpd.requests, httpd.range_support = [], False
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{httpd.server_address[1]}/", httpd
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


def write_zip(path, files):
    """files: {member name: bytes}."""
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def zip_bytes(files):
    buffer = io.BytesIO()
    write_zip(buffer, files)
    return buffer.getvalue()


def png_bytes(size=(12, 10), value=100):
    buffer = io.BytesIO()
    Image.fromarray(np.full(size, value, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def no_leftovers(folder):
    """No '.partial' staging folder or '.part' download left in `folder`."""
    return not [p for p in Path(folder).rglob("*") if ".partial-" in p.name or p.name.endswith(".part")]


# ----------------------------------------------------------------------------- extraction

def test_safe_extract_zip_and_tar(tmp_path):
    files = {"a/b.txt": b"hello", "c.txt": b"world"}
    safe_extract(write_zip(tmp_path / "x.zip", files), tmp_path / "from_zip")
    with tarfile.open(tmp_path / "x.tar.gz", "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    safe_extract(tmp_path / "x.tar.gz", tmp_path / "from_tar")
    for dest in ("from_zip", "from_tar"):
        assert (tmp_path / dest / "a" / "b.txt").read_bytes() == b"hello"
        assert (tmp_path / dest / "c.txt").read_bytes() == b"world"
    assert no_leftovers(tmp_path)


@pytest.mark.parametrize("name", ["../evil.txt", "ok/../../evil.txt", "/tmp/evil.txt", "C:\\evil.txt"])
def test_unsafe_zip_paths_are_refused_and_nothing_is_written(tmp_path, name):
    archive = write_zip(tmp_path / "bad.zip", {"good.txt": b"1", name: b"2"})
    with pytest.raises(UnsafeArchiveError, match="Refusing"):
        safe_extract(archive, tmp_path / "out" / "dest")
    assert not (tmp_path / "out" / "dest").exists() and not (tmp_path / "evil.txt").exists()
    assert list((tmp_path / "out").iterdir()) == []  # no half-extracted staging folder


def test_zip_symlink_escaping_the_destination_is_refused(tmp_path):
    info = zipfile.ZipInfo("dir/link")
    info.external_attr = (0o120777 << 16)  # a symlink entry; its content is the target
    with zipfile.ZipFile(tmp_path / "link.zip", "w") as zf:
        zf.writestr(info, "../../outside")
    with pytest.raises(UnsafeArchiveError, match="outside"):
        safe_extract(tmp_path / "link.zip", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_tar_links_escaping_the_destination_are_refused(tmp_path):
    for kind, target in [(tarfile.SYMTYPE, "../../etc/passwd"), (tarfile.SYMTYPE, "/etc/passwd"),
                         (tarfile.LNKTYPE, "../outside")]:
        path = tmp_path / "links.tar"
        with tarfile.open(path, "w") as tf:
            info = tarfile.TarInfo("dir/link")
            info.type, info.linkname = kind, target
            tf.addfile(info)
        with pytest.raises(UnsafeArchiveError, match="outside"):
            safe_extract(path, tmp_path / "dest")
        assert not (tmp_path / "dest").exists()
    # a link that stays inside is fine
    with tarfile.open(path, "w") as tf:
        data = tarfile.TarInfo("dir/file.txt")
        data.size = 2
        tf.addfile(data, io.BytesIO(b"ok"))
        link = tarfile.TarInfo("dir/sub/link")
        link.type, link.linkname = tarfile.SYMTYPE, "../file.txt"
        tf.addfile(link)
    safe_extract(path, tmp_path / "dest")
    assert (tmp_path / "dest" / "dir" / "sub" / "link").read_bytes() == b"ok"


def tar_with(path, members):
    """members: (name, kind, payload): kind 'file' (payload bytes), 'sym' or 'hard' (payload = link target)."""
    with tarfile.open(path, "w") as tf:
        for name, kind, payload in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                info.type = tarfile.SYMTYPE if kind == "sym" else tarfile.LNKTYPE
                info.linkname = payload
                tf.addfile(info)
    return path


CHAINS = {  # each name looks harmless alone; followed through the earlier links, it leaves the destination
    "sym-chain": [("x/y", "sym", ".."), ("x/y/z", "sym", ".."), ("x/y/z/evil.txt", "file", b"!")],
    "deep-chain": [("a/b", "sym", "."), ("a/b/b/c", "sym", "../.."), ("a/b/b/c/evil.txt", "file", b"!")],
    "hard-through-link": [("x/y", "sym", ".."), ("x/y/z", "sym", ".."), ("h", "hard", "x/y/z/evil.txt")],
    "file-through-link": [("up", "sym", "x/../.."), ("up/evil.txt", "file", b"!")],
}


@pytest.mark.parametrize("with_data_filter", [True, False])  # False: Python 3.10.0-3.10.11 and 3.11.0-3.11.3
@pytest.mark.parametrize("chain", sorted(CHAINS))
def test_link_chains_are_resolved_on_every_python(tmp_path, monkeypatch, chain, with_data_filter):
    if not with_data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    root = tmp_path / "box" / "inner"
    root.mkdir(parents=True)
    archive = tar_with(tmp_path / "chain.tar", CHAINS[chain])
    with pytest.raises(UnsafeArchiveError, match="Refusing .*outside the destination"):
        safe_extract(archive, root / "dest")
    assert not list(tmp_path.rglob("evil.txt")) and list(root.iterdir()) == []


def test_links_that_stay_inside_are_kept(tmp_path, monkeypatch):
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tar_with(tmp_path / "ok.tar", [("v1/a.txt", "file", b"A"), ("docs/latest", "sym", "../v1"),
                                            ("x/y", "sym", ".."), ("x/y/v1/b.txt", "file", b"B")])
    safe_extract(archive, tmp_path / "dest")
    assert (tmp_path / "dest" / "docs" / "latest" / "a.txt").read_bytes() == b"A"
    assert (tmp_path / "dest" / "v1" / "b.txt").read_bytes() == b"B"


@pytest.mark.skipif(not hasattr(tarfile, "data_filter"), reason="tarfile has no data filter on this Python")
def test_tarfile_filter_errors_become_one_sentence(tmp_path, monkeypatch):
    monkeypatch.setattr(extract, "_check_tar", lambda archive: None)  # let tarfile's own filter see the link
    archive = tar_with(tmp_path / "link.tar", [("dir/link", "sym", "../../outside")])
    with pytest.raises(UnsafeArchiveError, match=r"Refusing .*link\.tar.*corrupt or malicious"):
        safe_extract(archive, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def damaged_archives(tmp_path):
    """{kind: path} of a truncated zip, a CRC-damaged zip and a truncated tar.gz."""
    payload = bytes(range(256)) * 64
    good = write_zip(tmp_path / "good.zip", {"a.bin": payload, "b.bin": payload[::-1]})
    data = good.read_bytes()
    (tmp_path / "truncated.zip").write_bytes(data[: len(data) // 2])
    crc = bytearray(data)
    crc[data.index(payload[:64]) + 100] ^= 0xFF  # stored (uncompressed) member: one flipped byte
    (tmp_path / "crc.zip").write_bytes(bytes(crc))
    with tarfile.open(tmp_path / "good.tar.gz", "w:gz") as tf:
        info = tarfile.TarInfo("a.bin")
        noise = np.random.default_rng(0).integers(0, 256, 20000, dtype=np.uint8).tobytes()
        info.size = len(noise)
        tf.addfile(info, io.BytesIO(noise))
    data = (tmp_path / "good.tar.gz").read_bytes()
    (tmp_path / "truncated.tar.gz").write_bytes(data[: len(data) // 2])
    return {k: tmp_path / k for k in ("truncated.zip", "crc.zip", "truncated.tar.gz")}


@pytest.mark.parametrize("kind", ["truncated.zip", "crc.zip", "truncated.tar.gz"])
def test_damaged_archives_are_one_sentence_naming_the_archive(tmp_path, kind):
    archive = damaged_archives(tmp_path)[kind]
    with pytest.raises(DownloadError, match=rf"{kind}.* is truncated or damaged .*download it again") as info:
        extract_any(archive, tmp_path / "dest")  # a truncated zip is not "no extraction program found"
    assert "\n" not in str(info.value) and not (tmp_path / "dest").exists() and no_leftovers(tmp_path)


def test_installed_dataset_folders_are_0755(tmp_path):
    safe_extract(write_zip(tmp_path / "x.zip", {"a/b.txt": b"1"}), tmp_path / "dest")
    assert (tmp_path / "dest").stat().st_mode & 0o777 == 0o755


def test_os_errors_at_the_downloader_boundary_are_one_line(tmp_path, capsys):
    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "dest" / "RawImage"))
    assert _common.run_cli(full_disk, argparse.Namespace(dest=str(tmp_path / "dest"))) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "dest/RawImage" in err and "disk is full" in err


FAKE_BSDTAR = """#!{python}
# A stand-in for bsdtar reading a JSON "archive" {{name: text}}: -tf lists, -xf A -C D extracts.
import json, pathlib, sys
args = sys.argv[1:]
members = json.loads(pathlib.Path(args[1]).read_text())
if args[0] == "-tf":
    print("\\n".join(members))
else:
    for name, text in members.items():
        target = pathlib.Path(args[3]) / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
"""


def test_external_extractor_is_used_for_non_zip_archives(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "bsdtar"
    tool.write_text(FAKE_BSDTAR.format(python=sys.executable))
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    archive = tmp_path / "inner.rar"
    archive.write_text(json.dumps({"RawImage/TrainingData/001.txt": "x"}))
    extract_any(archive, tmp_path / "out")
    assert (tmp_path / "out" / "RawImage" / "TrainingData" / "001.txt").read_text() == "x"
    archive.write_text(json.dumps({"../escape.txt": "x"}))
    with pytest.raises(UnsafeArchiveError):
        extract_any(archive, tmp_path / "out2")
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "out2").exists()


def test_missing_extractor_says_how_to_install_one(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    archive = tmp_path / "RawImage.rar"
    archive.write_bytes(b"Rar!\x1a\x07\x00" + bytes(100))
    with pytest.raises(DownloadError, match=r"No program to extract RawImage\.rar.*apt-get install"):
        extract_any(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def rar4(files):
    """A minimal real RAR 4 archive of stored (uncompressed) files {name: bytes}: marker, main header, one
    file header + data per file, end block; each header starts with the low 16 bits of its CRC32."""
    def block(head_type, flags, body):
        rest = struct.pack("<BHH", head_type, flags, 7 + len(body)) + body
        return struct.pack("<H", zlib.crc32(rest) & 0xFFFF) + rest
    out = b"Rar!\x1a\x07\x00" + block(0x73, 0, bytes(6))
    for name, data in files.items():
        raw = name.encode()
        body = struct.pack("<IIBIIBBHI", len(data), len(data), 3, zlib.crc32(data), 0x5A210000, 20, 0x30,
                           len(raw), 0o100644) + raw
        out += block(0x74, 0x8000, body) + data
    return out + block(0x7B, 0x4000, b"")


needs_extractor = pytest.mark.skipif(extract.find_extractor() is None, reason="no bsdtar / 7z / unrar installed")


@needs_extractor
def test_real_external_extractor_on_a_real_rar(tmp_path):
    (tmp_path / "inner.rar").write_bytes(rar4({"d/e.txt": b"real", "f.txt": b"rar"}))
    extract_any(tmp_path / "inner.rar", tmp_path / "out")
    assert (tmp_path / "out" / "d" / "e.txt").read_bytes() == b"real"
    assert (tmp_path / "out" / "f.txt").read_bytes() == b"rar"
    (tmp_path / "bad.rar").write_bytes(rar4({"../evil.txt": b"x"}))
    with pytest.raises(UnsafeArchiveError):
        extract_any(tmp_path / "bad.rar", tmp_path / "out2")
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "out2").exists()


# ----------------------------------------------------------------------------- downloading

def test_fetch_verifies_checksum_and_keeps_no_corrupt_file(server, tmp_path):
    root, url, _ = server
    (root / "f.bin").write_bytes(b"payload" * 1000)
    good = hashlib.sha256(b"payload" * 1000).hexdigest()
    cache = tmp_path / "cache"
    with pytest.raises(DownloadError, match=f"Checksum mismatch.*got {good}"):
        fetch(url + "f.bin", "f.bin", sha256="0" * 64, cache_dir=cache, progress=False)
    assert list(cache.iterdir()) == []
    path = fetch(url + "f.bin", "f.bin", sha256=good, cache_dir=cache, progress=False)
    assert path.read_bytes() == b"payload" * 1000 and sorted(p.name for p in cache.iterdir()) == ["f.bin"]


@pytest.mark.parametrize("range_support", [True, False])
def test_interrupted_download_resumes(server, tmp_path, range_support):
    root, url, httpd = server
    httpd.range_support = range_support
    data = bytes(range(256)) * 400
    (root / "big.zip").write_bytes(data)
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "big.zip.part").write_bytes(data[:30000])  # what an interrupted transfer left behind
    path = fetch(url + "big.zip", "big.zip", sha256=hashlib.sha256(data).hexdigest(), cache_dir=cache,
                 progress=False)
    assert path.read_bytes() == data and no_leftovers(cache)
    assert httpd.requests[-1][1].get("Range") == "bytes=30000-"


def test_unreachable_server_is_a_clear_error(tmp_path):
    with pytest.raises(DownloadError, match="Could not reach .*--archive"):
        fetch("http://127.0.0.1:9/x.zip", "x.zip", cache_dir=tmp_path, progress=False)


# ----------------------------------------------------------------------------- ISBI 2015

def isbi_article_zip(path, real_rar=False):
    """The figshare article zip in miniature: RawImage.rar + AnnotationsByMD.rar, 2 + 2 + 1 images,
    19-landmark annotations. The inner archives are zips under a .rar name (extract_any recognises them by
    content) or, with `real_rar`, real RAR 4 archives (needs bsdtar / 7z / unrar)."""
    images, notes = {}, {}
    for split, ids in [("TrainingData", ["001", "002"]), ("Test1Data", ["151", "152"]), ("Test2Data", ["301"])]:
        for i in ids:
            images[f"RawImage/{split}/{i}.png"] = png_bytes()
            if split != "Test2Data":
                for doctor in ("senior", "junior"):
                    notes[f"AnnotationsByMD/400_{doctor}/{i}.txt"] = "\n".join(["3,4"] * 19 + ["1", "2"]).encode()
    pack = rar4 if real_rar else zip_bytes
    return write_zip(path, {"RawImage.rar": pack(images), "AnnotationsByMD.rar": pack(notes)})


@pytest.mark.parametrize("real_rar", [False, pytest.param(True, marks=needs_extractor)])
def test_isbi_good_download_gives_the_public_layout(server, tmp_path, real_rar):
    root, url, _ = server
    isbi_article_zip(root / "article.zip", real_rar)
    dest = tmp_path / "data" / "isbi2015"
    isbi2015.download_isbi2015(dest, url=url + "article.zip", cache_dir=tmp_path / "cache", progress=False)
    assert sorted(p.name for p in dest.iterdir()) == ["AnnotationsByMD", "RawImage"]
    assert (dest / "RawImage" / "Test1Data" / "152.png").is_file()
    assert isbi2015.validate_isbi2015(dest) == {"TrainingData": 2, "Test1Data": 2, "Test2Data": 1}
    assert no_leftovers(tmp_path / "data")
    from farnet_lite.data.isbi2015 import read_isbi2015
    dataset = read_isbi2015(dest, "train")
    assert len(dataset) == 2 and dataset.landmarks(0)[0].tolist() == [3.0, 4.0]
    # a second run finds the valid copy and does nothing
    isbi2015.download_isbi2015(dest, url=url + "missing.zip", cache_dir=tmp_path / "cache", progress=False)


def test_isbi_checksum_mismatch_leaves_nothing(server, tmp_path, capsys):
    root, url, _ = server
    isbi_article_zip(root / "article.zip")
    dest, cache = tmp_path / "data" / "isbi2015", tmp_path / "cache"
    status = isbi2015.main(["--dest", str(dest), "--url", url + "article.zip", "--sha256", "ab" * 32,
                            "--cache", str(cache), "--quiet"])
    assert status == 1 and "Checksum mismatch" in capsys.readouterr().err
    assert not dest.exists() and (not cache.exists() or list(cache.iterdir()) == [])


def test_isbi_without_rar_extractor_says_how_to_install_one(server, tmp_path, monkeypatch):
    root, url, _ = server
    write_zip(root / "article.zip", {"RawImage.rar": b"Rar!\x1a\x07\x00" + bytes(64),
                                     "AnnotationsByMD.rar": b"Rar!\x1a\x07\x00" + bytes(64)})
    monkeypatch.setattr(shutil, "which", lambda name: None)
    dest = tmp_path / "data" / "isbi2015"
    with pytest.raises(DownloadError, match="bsdtar.*7z.*unrar.*install"):
        isbi2015.download_isbi2015(dest, url=url + "article.zip", cache_dir=tmp_path / "cache", progress=False)
    assert not dest.exists() and list((tmp_path / "data").iterdir()) == []


def test_isbi_html_instead_of_zip_points_to_the_manual_route(server, tmp_path):
    root, url, _ = server
    (root / "challenge.html").write_text("<!DOCTYPE html><html>please verify you are human</html>")
    with pytest.raises(DownloadError, match="browser.*--archive"):
        isbi2015.download_isbi2015(tmp_path / "isbi", url=url + "challenge.html", cache_dir=tmp_path / "c",
                                   progress=False)
    assert list((tmp_path / "c").iterdir()) == []  # the HTML page is not kept as "the download"


def test_isbi_archive_with_traversal_is_refused(tmp_path):
    archive = write_zip(tmp_path / "article.zip", {"RawImage.rar": b"x", "../../evil.txt": b"x"})
    with pytest.raises(UnsafeArchiveError):
        isbi2015.download_isbi2015(tmp_path / "data" / "isbi2015", archives=[archive], progress=False)
    assert not (tmp_path / "data" / "isbi2015").exists() and no_leftovers(tmp_path)


# ----------------------------------------------------------------------------- hand

def hand_site(root, ids, served):
    row = lambda i: ",".join([i] + [str(v) for v in range(1, 75)])
    setup = root / "setup"
    (setup / "cv").mkdir(parents=True)
    (setup / "all.csv").write_text("\n".join(row(i) for i in ids) + "\n")
    for k in (1, 2, 3):
        (setup / "cv" / f"set{k}").mkdir()
        (setup / "cv" / f"set{k}" / "train.txt").write_text("\n".join(ids[:-1]) + "\n")
        (setup / "cv" / f"set{k}" / "test.txt").write_text(ids[-1] + "\n")
    for i in served:  # the DHA tree: JPEGimages/<race+sex>/<race+sex+age>/<id>.jpg
        folder = root / "JPEGimages" / "CAUF" / f"CAUF0{int(i) % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 16), 90, np.uint8)).save(folder / f"{i}.jpg")


def test_hand_setup_and_images_from_the_index_tree(server, tmp_path):
    root, url, _ = server
    hand_site(root, ["3142", "3143", "3144"], served=["3142", "3143", "9999"])
    dest = tmp_path / "hand_dha"
    hand.download_hand(dest, url=url + "JPEGimages/", setup_url=url + "setup/", cache_dir=tmp_path / "cache",
                       progress=False, workers=2)
    assert sorted(p.name for p in (dest / "images").iterdir()) == ["3142.jpg", "3143.jpg"]  # not 9999
    assert hand.validate_hand(dest) == {"ids": 3, "images": 2, "cv_without_image": 1}
    assert (dest / "setup" / "cv" / "set2" / "test.txt").read_text().strip() == "3144"
    assert no_leftovers(tmp_path)


def test_hand_server_down_is_a_clear_error_and_leaves_nothing(server, tmp_path):
    root, url, _ = server
    hand_site(root, ["3142"], served=[])
    with pytest.raises(DownloadError, match="cannot be reached.*--archive"):
        hand.download_hand(tmp_path / "hand_dha", url="http://127.0.0.1:9/JPEGimages/", setup_url=url + "setup/",
                           cache_dir=tmp_path / "cache", progress=False)
    assert not (tmp_path / "hand_dha").exists() and no_leftovers(tmp_path)


def test_hand_manual_route_with_an_archive_and_a_local_setup(tmp_path):
    site = tmp_path / "site"
    hand_site(site, ["3142", "3143"], served=[])
    jpg = io.BytesIO()
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(jpg, format="JPEG")
    archive = write_zip(tmp_path / "dha.zip", {"x/ASIF/3142.jpg": jpg.getvalue(), "y/3143.jpg": jpg.getvalue(),
                                               "y/notes.txt": b"-"})
    dest = tmp_path / "hand_dha"
    assert hand.main(["--dest", str(dest), "--setup-dir", str(site / "setup"), "--archive", str(archive),
                      "--quiet"]) == 0
    assert sorted(p.name for p in (dest / "images").iterdir()) == ["3142.jpg", "3143.jpg"]
    assert (dest / "setup" / "all.csv").read_text() == (site / "setup" / "all.csv").read_text()


@pytest.mark.realdata
@pytest.mark.skipif(not (SHARED / "hand_dha").is_dir(), reason="real data (../shared/data) absent")
def test_hand_real_setup_and_images_through_the_manual_route(tmp_path):
    images = sorted((SHARED / "hand_dha" / "images").glob("*.jpg"))
    archive = write_zip(tmp_path / "dha.zip", {f"JPEGimages/{p.name}": p.read_bytes() for p in images})
    dest = hand.download_hand(tmp_path / "hand_dha", archives=[archive], setup_dir=SHARED / "hand_dha" / "setup",
                              progress=False)
    counts = hand.validate_hand(dest)
    assert counts["ids"] == 910 and counts["images"] == len(images) == 12


# ----------------------------------------------------------------------------- spine

def spine_zip(path, top="boostnet_labeldata"):
    from scipy.io import savemat
    files = {}
    names = ["sunhl-1th-01 A AP.jpg", "sunhl-1th-02 B AP.jpg"]
    for i, name in enumerate(names):
        files[f"{top}/data/training/{name}"] = png_bytes((40, 20), 50 + i)
        mat = io.BytesIO()
        savemat(mat, {"p2": np.full((68, 2), 5.0 + i)})
        files[f"{top}/labels/training/{name}.mat"] = mat.getvalue()
    files[f"{top}/labels/training/filenames.csv"] = "\n".join(names).encode()
    files[f"{top}/labels/training/landmarks.csv"] = b"0"
    files[f"{top}/labels/training/angles.csv"] = b"0,0,0"
    files[f"{top}/data/test/t1.jpg"] = png_bytes((40, 20))
    files[f"{top}/labels/test/filenames.csv"] = b"t1.jpg"
    return write_zip(path, files)


def test_spine_archive_is_installed_and_readable(tmp_path):
    archive = spine_zip(tmp_path / "spine.zip", top="some/mirror/boostnet_labeldata")
    target = spine.install_spine(tmp_path / "data" / "spine_aasce", archives=[archive], progress=False)
    assert target == tmp_path / "data" / "spine_aasce" / "boostnet_labeldata"
    assert spine.validate_spine(target) == {"training": 2, "test": 1}
    assert no_leftovers(tmp_path / "data")
    from farnet_lite.data.spine import read_spine
    dataset = read_spine(tmp_path / "data" / "spine_aasce", "training")
    assert len(dataset) == 2 and dataset.landmarks(1)[0].tolist() == [6.0, 6.0]


def test_spine_from_url_and_without_any_source(server, tmp_path):
    root, url, _ = server
    spine_zip(root / "mirror.zip")
    target = spine.install_spine(tmp_path / "spine", url=url + "mirror.zip", cache_dir=tmp_path / "cache",
                                 progress=False)
    assert (target / "labels" / "test" / "filenames.csv").is_file()
    with pytest.raises(DownloadError, match="SpineWeb.*offline.*--archive"):
        spine.install_spine(tmp_path / "other")
    incomplete = write_zip(tmp_path / "bad.zip", {"boostnet_labeldata/data/training/a.jpg": png_bytes(),
                                                  "boostnet_labeldata/labels/training/filenames.csv": b"a.jpg"})
    with pytest.raises(DownloadError, match="missing"):
        spine.install_spine(tmp_path / "third", archives=[incomplete])
    assert not (tmp_path / "third" / "boostnet_labeldata").exists() and no_leftovers(tmp_path / "third")


@pytest.mark.parametrize("module", [isbi2015, hand, spine])
def test_help_works(module, capsys):
    with pytest.raises(SystemExit) as info:
        module.main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0 and f"python -m farnet_lite.download.{module.__name__.rsplit('.', 1)[1]}" in out
    assert "--dest" in out and "--url" in out and "--archive" in out


def test_downloaders_run_as_modules():
    """`python -m farnet_lite.download.<dataset>` (one subprocess: importing the package loads torch)."""
    result = subprocess.run([sys.executable, "-m", "farnet_lite.download.spine", "--help"], cwd=REPO,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--archive" in result.stdout


def test_force_replaces_an_existing_copy_only_when_the_new_one_is_complete(tmp_path):
    first = spine_zip(tmp_path / "a.zip")
    target = spine.install_spine(tmp_path / "spine", archives=[first])
    marker = target / "data" / "training" / "marker.txt"
    marker.write_text("old copy")
    broken = write_zip(tmp_path / "broken.zip", {"nothing/here.txt": b"x"})
    with pytest.raises(DownloadError):
        spine.install_spine(tmp_path / "spine", archives=[broken], force=True)
    assert marker.read_text() == "old copy"  # a failed --force keeps the old copy
    spine.install_spine(tmp_path / "spine", archives=[first], force=True)
    assert not marker.exists() and spine.validate_spine(target)["training"] == 2
    assert sorted(p.name for p in (tmp_path / "spine").iterdir()) == ["boostnet_labeldata"]


def test_downloaders_refuse_a_synthetic_copy(tmp_path):
    """A synthetic stand-in has the public layout; the downloaders must not take it for the real data."""
    from farnet_lite.download import DownloadError
    from farnet_lite.download.isbi2015 import download_isbi2015
    from farnet_lite.download.spine import install_spine
    from farnet_lite.data.synthetic import write_synthetic_isbi, write_synthetic_spine

    isbi = write_synthetic_isbi(tmp_path / "isbi2015", n_train=2, n_test1=1, n_test2=1)
    with pytest.raises(DownloadError, match="synthetic copy"):
        download_isbi2015(isbi)
    spine = write_synthetic_spine(tmp_path / "spine_aasce", n_training=2, n_test=1)
    with pytest.raises(DownloadError, match="synthetic copy"):
        install_spine(spine)
