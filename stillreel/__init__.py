"""stillreel: a self-hosted, open implementation of fal.ai's Kling image-to-video API."""

__version__ = "0.1.0"
