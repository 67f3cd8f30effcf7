"""kelp: segment kelp canopy in multispectral tiles by stacking per-pixel trees and a U-Net."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("kelp")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
