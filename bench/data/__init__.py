"""Datasets: readers (MTAT, MSD, manifest) that all produce one `DatasetIndex`, the synthetic
MTAT-format generator, the per-sample-rate waveform cache, and torch views over it."""
