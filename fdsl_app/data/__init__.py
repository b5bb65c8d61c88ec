"""Datasets and LightningDataModules: formula families rendered on the fly."""
