"""Layered Docker/OCI images from Nix closures."""

__version__ = "0.1.0"
