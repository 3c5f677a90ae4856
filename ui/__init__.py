"""The web dashboard's static files (installed as ``mstream.ui``)."""

from pathlib import Path

STATIC_DIR = Path(__file__).resolve().parent / "static"
