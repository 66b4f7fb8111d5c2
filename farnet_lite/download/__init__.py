"""Downloaders of the three public datasets of the FARNet paper, one module each (notebook 00_setup_and_data).

    python -m farnet_lite.download.isbi2015 --dest data/isbi2015      ISBI 2015 cephalograms (figshare)
    python -m farnet_lite.download.hand --dest data/hand_dha          Digital Hand Atlas + Payer et al.'s 37 landmarks
    python -m farnet_lite.download.spine --dest data/spine_aasce --archive boostnet_labeldata.zip   AASCE / SpineWeb 16

Each one downloads with pooch (checksums where known, progress bars, a cache, resume), extracts safely into a
temporary folder and renames it into place only when the layout has been verified. `--help` explains the
manual route for sources that are offline or need a browser.
"""
from farnet_lite.download._common import DownloadError, UnsafeArchiveError

__all__ = ["DownloadError", "UnsafeArchiveError"]
