"""Data layer: sources, catalog, habitability labels, modalities, build, validation, loading."""
