"""The episode contract: one language for devices, collector, writer and ML readers.

The files in ``schemas/`` are the single source of truth; this package loads and implements them.
"""
