"""kumonet: a highly-available network virtualization controller."""
__version__ = "0.1.0"
