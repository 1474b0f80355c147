"""nomadrig: GPU boxes, towers and idle teardown for small ML teams."""

__version__ = "0.1.0"

__all__ = ["__version__"]
