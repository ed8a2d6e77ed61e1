"""Short planet descriptions built from catalog rows, and a tokenizer that needs no download.

The tokenizer is byte-level UTF-8 (256 byte ids) plus PAD=256, BOS=257, EOS=258: every string is
representable and nothing is fetched from a hub. The descriptions state measured quantities only
(no label words such as "habitable").
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

PAD, BOS, EOS = 256, 257, 258
VOCAB_SIZE = 259


def _fmt(value, digits: int = 3) -> str:
    return "unknown" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}g}"


def describe(row: pd.Series) -> str:
    """Returns a one-paragraph description of a planet from its cleaned catalog row."""
    method = row.get("discoverymethod")
    year = row.get("disc_year")
    found = f" It was found by {str(method).lower()}" if isinstance(method, str) else ""
    if found and isinstance(year, (int, float)) and not math.isnan(year):
        found += f" in {int(year)}"
    return (f"{row['pl_name']} orbits {row['hostname']}, a star of {_fmt(row.get('st_teff'), 4)} K and "
            f"{_fmt(row.get('st_rad'))} solar radii, every {_fmt(row.get('pl_orbper'))} days at "
            f"{_fmt(row.get('pl_orbsmax'))} AU. It receives {_fmt(row.get('pl_insol'))} times Earth's "
            f"insolation; its radius is {_fmt(row.get('pl_rade'))} Earth radii and its mass "
            f"{_fmt(row.get('pl_bmasse'))} Earth masses.{found + '.' if found else ''}")


def encode(text: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """Returns (token ids [max_len] int64, mask [max_len] bool): BOS, bytes, EOS, then PAD;
    truncated to ``max_len`` (EOS kept last)."""
    ids = [BOS, *text.encode("utf-8"), EOS]
    if len(ids) > max_len:
        ids = ids[: max_len - 1] + [EOS]
    mask = np.zeros(max_len, dtype=bool)
    mask[: len(ids)] = True
    return np.array(ids + [PAD] * (max_len - len(ids)), dtype=np.int64), mask


def decode(ids) -> str:
    """Returns the text of token ids (specials dropped)."""
    return bytes(int(i) for i in ids if int(i) < 256).decode("utf-8", errors="replace")


class ByteTokenizer:
    """The default tokenizer of from-scratch presets: :func:`encode` (bytes + PAD/BOS/EOS)."""

    name = "byte-level UTF-8"
    vocab_size = VOCAB_SIZE
    sha256 = None

    def encode(self, text: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        return encode(text, max_len)

    def decode(self, ids) -> str:
        return decode(ids)

    def identity(self) -> dict:
        return {"tokenizer": self.name, "vocab_size": self.vocab_size}


class CheckpointTokenizer:
    """The ``tokenizer.json`` of a pretrained LLM checkpoint (``tokenizers``), with the same
    encode contract as :func:`encode`: ids and mask of length ``max_len``, padded, truncated with
    the last (end) token kept."""

    def __init__(self, checkpoint_dir):
        from pathlib import Path

        from tokenizers import Tokenizer

        from astrobio_lib.fsutil import sha256_file

        path = Path(checkpoint_dir) / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist: the LLM checkpoint needs its tokenizer.json "
                                    f"(the tokenizer its weights were trained with)")
        self.path = path
        self.tokenizer = Tokenizer.from_file(str(path))
        self.sha256 = sha256_file(path)
        self.vocab_size = self.tokenizer.get_vocab_size()
        self.name = f"tokenizer.json of {Path(checkpoint_dir).name}"
        vocab = self.tokenizer.get_vocab()
        self.pad_id = next((vocab[t] for t in ("<pad>", "</s>", "<|end_of_text|>") if t in vocab), 0)

    def encode(self, text: str, max_len: int) -> tuple[np.ndarray, np.ndarray]:
        ids = self.tokenizer.encode(text).ids
        if len(ids) > max_len:
            ids = ids[: max_len - 1] + ids[-1:]
        mask = np.zeros(max_len, dtype=bool)
        mask[: len(ids)] = True
        return np.array(ids + [self.pad_id] * (max_len - len(ids)), dtype=np.int64), mask

    def decode(self, ids) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)

    def identity(self) -> dict:
        return {"tokenizer": self.name, "vocab_size": self.vocab_size, "sha256": self.sha256}


def tokenizer_for(llm_checkpoint=None):
    """The tokenizer of a run: the checkpoint's when an LLM checkpoint is configured, else bytes."""
    return CheckpointTokenizer(llm_checkpoint) if llm_checkpoint else ByteTokenizer()
