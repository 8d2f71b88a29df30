"""Test and demo helpers that ship with m3leo: the synthetic M3LEO source (``synth``)."""
