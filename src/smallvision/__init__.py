"""smallvision: Chollet's "convnets on small data" study as a reproducible pipeline."""

__version__ = "0.1.0"
