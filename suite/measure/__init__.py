"""Measurement core: timing, memory, energy, compute and the machine's fingerprint."""
