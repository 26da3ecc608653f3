"""Datasets, transforms, partial labels and the synthetic data generator.

`data.datasets.build_dataset(cfg, split)` is the entry point; this package file imports
nothing so that `python -m data.synthetic` / `python -m data.partial_labels` start fast.
"""
