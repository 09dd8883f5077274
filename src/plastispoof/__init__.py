"""plastispoof: spoofed-speech detection with capacity-adaptive training."""

__version__ = "0.1.0"

from plastispoof.errors import InputError

__all__ = ["InputError", "__version__"]
