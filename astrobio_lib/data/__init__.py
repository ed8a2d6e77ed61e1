"""Data layer: sources, catalog, habitable-zone labels, modalities, simulated spectra, build, validation, loading."""
