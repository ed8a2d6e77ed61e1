"""astrobio: a notebook-driven, memory-budgeted pipeline for multimodal exoplanet models (tasks in astrobio_lib/tasks)."""

__version__ = "0.1.0"

import warnings as _warnings

# PyG imports ``tqdm.auto``, which warns "IProgress not found" in every Jupyter kernel without
# ipywidgets; astrobio's progress output is plain text, so that widget warning is only noise.
_warnings.filterwarnings("ignore", message="IProgress not found")
