"""Spectrogram-resolution benchmarking suite for CNN music auto-tagging."""
