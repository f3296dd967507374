"""tierenv: learning weighted memory interleaving across DDR and CXL."""

__version__ = "0.1.0"
