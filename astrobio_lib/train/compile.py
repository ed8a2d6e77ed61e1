"""Regional compilation: ``torch.compile`` on the repeated blocks, PyG graph code left eager.

Compiling the whole multimodal model breaks its graph in PyG's negative sampling and in the fusion's
modality masking (measured on an H100: 11.4 s per step, recompilation storms). The blocks that carry
almost all FLOPs repeat with one shape per run — the LLM's decoder blocks, the datacube ViT's and the
fusion's transformer layers — so each is compiled in place (``nn.Module.compile``, ``dynamic=False``);
blocks of one class share the compiled code. Compilation is lazy: the first optimizer step includes
it (the trainer logs that step's duration). Shapes are fixed per run: text is padded to
``text_max_len``; a last micro-batch of an epoch with fewer samples compiles once more for that size.
"""

from __future__ import annotations

import torch
from torch import nn

from astrobio_lib.models.llm import Block

REGIONS = (Block, nn.TransformerEncoderLayer)


def wanted(setting: str, device: torch.device) -> bool:
    """``compile: auto`` compiles on CUDA only (on a CPU the compile time rarely pays off)."""
    return setting == "on" or (setting == "auto" and device.type == "cuda")


def compile_regions(model: nn.Module) -> list[str]:
    """Compiles every repeated block of ``model`` in place; returns their names."""
    names = []
    for name, module in model.named_modules():
        if isinstance(module, REGIONS):
            module.compile(dynamic=False)
            names.append(name)
    return names
