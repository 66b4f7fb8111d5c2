"""farnet-lite: the reference implementation taught by the notebooks (filled in below)."""
__version__ = "0.1.0"
