"""gpuhive: turn friends' GPU machines behind NAT into one pool."""

__version__ = "0.1.0"
