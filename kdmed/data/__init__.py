"""Datasets: indexing (adapters), preprocessing into model-ready slices, demo generators and transforms."""
