"""nas: hardware-aware neural architecture search for medical imaging."""

__version__ = "0.1.0"
