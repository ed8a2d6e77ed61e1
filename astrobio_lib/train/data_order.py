"""Deterministic, resumable data order.

Epoch ``e`` visits the training split in ``torch.randperm(n, seed + e)`` order. A *global*
micro-batch is the next ``micro_batch_size x world_size`` indices; rank ``r`` takes its slice. The
position (epoch, offset) is all a checkpoint needs to continue mid-epoch exactly, so every sample
is seen exactly once per epoch across a crash. The last global micro-batch of an epoch may be short.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch


@dataclass
class Position:
    epoch: int = 0
    offset: int = 0  # samples of this epoch's permutation already consumed (all ranks)


class ResumableOrder:
    def __init__(self, n: int, micro_batch_size: int, seed: int, world_size: int = 1, rank: int = 0):
        if n < world_size:
            raise ValueError(f"training split has {n} samples, fewer than {world_size} ranks")
        self.n, self.mb, self.seed, self.world, self.rank = n, micro_batch_size, seed, world_size, rank
        self.position = Position()
        self._perm_epoch = -1
        self._perm = torch.empty(0, dtype=torch.long)

    def permutation(self, epoch: int) -> torch.Tensor:
        if epoch != self._perm_epoch:
            self._perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed + epoch))
            self._perm_epoch = epoch
        return self._perm

    def next_batch(self, max_epochs: int) -> tuple[list[int], int] | None:
        """Returns (this rank's indices, the epoch they belong to) and advances, or None when
        ``max_epochs`` are done."""
        pos = self.position
        if pos.offset >= self.n:
            pos.epoch, pos.offset = pos.epoch + 1, 0
        if pos.epoch >= max_epochs:
            return None
        glob = self.permutation(pos.epoch)[pos.offset: pos.offset + self.mb * self.world]
        pos.offset += len(glob)
        per_rank = (len(glob) + self.world - 1) // self.world
        mine = glob[self.rank * per_rank: (self.rank + 1) * per_rank].tolist()
        if not mine:  # a short last batch with fewer samples than ranks: reuse the first sample
            mine = glob[:1].tolist()
        return mine, pos.epoch

    def epochs(self, max_epochs: int) -> Iterator[tuple[list[int], int]]:
        while (nb := self.next_batch(max_epochs)) is not None:
            yield nb

    def state(self) -> dict[str, int]:
        return {"epoch": self.position.epoch, "offset": self.position.offset, "seed": self.seed, "n": self.n}

    def load(self, state: dict[str, int]) -> None:
        if state["n"] != self.n or state["seed"] != self.seed:
            raise ValueError(f"data order in the checkpoint (n={state['n']}, seed={state['seed']}) does not match "
                             f"this run (n={self.n}, seed={self.seed}): the dataset or seed changed")
        self.position = Position(state["epoch"], state["offset"])
