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
