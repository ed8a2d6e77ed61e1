"""astrobio: a notebook-driven, memory-budgeted pipeline for a multimodal exoplanet-habitability model."""

__version__ = "0.1.0"
