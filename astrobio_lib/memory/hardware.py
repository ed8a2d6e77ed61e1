"""The hardware catalogue: the devices the memory budget knows (memory, dense bf16 peak, bandwidth,
from data sheets), the machine a plan targets, and host RAM. Imports nothing from the package, so
the configuration can check ``gpu_name`` against it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from typing import Optional

GB = 1e9  # memory is quoted in decimal GB, as vendors do
GIB = 1024**3


@dataclass(frozen=True)
class Device:
    """A training device: memory (bytes), dense bf16/fp16 tensor peak (FLOP/s), bandwidth (B/s)."""

    name: str
    memory_bytes: float
    peak_flops_bf16: float
    memory_bandwidth: float
    bf16: bool
    source: str


DEVICES: dict[str, Device] = {
    d.name: d
    for d in (
        Device("RTX A5000", 24 * GB, 111e12, 768e9, True,
               "NVIDIA RTX A5000 data sheet: 256 tensor cores x 128 FMA x 2 x 1.695 GHz"),
        Device("RTX 4090", 24 * GB, 165e12, 1008e9, True, "NVIDIA Ada whitepaper (fp32 accumulate)"),
        Device("A100 80GB SXM", 80 * GB, 312e12, 2.0e12, True, "NVIDIA A100 data sheet"),
        Device("H100 SXM", 80 * GB, 989e12, 3.35e12, True, "NVIDIA H100 data sheet (dense)"),
        Device("H200 SXM", 141 * GB, 989e12, 4.8e12, True, "NVIDIA H200 data sheet (dense; the H100's tensor cores)"),
    )
}


_DEVICE_TOKENS = {"A5000": "RTX A5000", "4090": "RTX 4090", "A100": "A100 80GB SXM", "H100": "H100 SXM", "H200": "H200 SXM"}


def device_for_name(name: str) -> Optional["Device"]:
    """Returns the :data:`DEVICES` entry of a CUDA device name as torch reports it (e.g. "NVIDIA
    H100 80GB HBM3" → H100 SXM), or None for a GPU whose peak astrobio does not know."""
    upper = name.upper()
    return next((DEVICES[key] for token, key in _DEVICE_TOKENS.items() if token in upper), None)



@dataclass(frozen=True)
class Hardware:
    device: Optional[Device]  # None: CPU
    n_devices: int = 1
    host_ram_bytes: float = 64 * GB

    @property
    def name(self) -> str:
        return f"{self.n_devices} x {self.device.name}" if self.device else "CPU"


def memory_bytes() -> tuple[Optional[int], Optional[int]]:
    """Returns (total, available) host RAM in bytes, from /proc/meminfo where present."""
    total = avail = None
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) * 1024 for line in fh}
        total, avail = info.get("MemTotal"), info.get("MemAvailable")
    except OSError:
        with contextlib.suppress(ValueError, OSError, AttributeError):
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return total, avail


def hardware_from(gpu_name: str, n_devices: int, gpu_memory_gb: float, host_ram_gb: Optional[float]) -> Hardware:
    """Returns a :class:`Hardware` from params-file values; ``gpu_name`` "cpu" means no GPU.

    Raises:
        ValueError: a GPU name not in :data:`DEVICES`.
    """
    ram = host_ram_gb * GB if host_ram_gb else float(memory_bytes()[0] or 64 * GB)
    if gpu_name.lower() == "cpu":
        return Hardware(None, 1, ram)
    if gpu_name not in DEVICES:
        raise ValueError(f"gpu_name={gpu_name!r}: one of cpu, {', '.join(DEVICES)}")
    dev = DEVICES[gpu_name]
    if gpu_memory_gb and abs(gpu_memory_gb * GB - dev.memory_bytes) > 0.5 * GB:
        dev = dataclasses.replace(dev, memory_bytes=gpu_memory_gb * GB)
    return Hardware(dev, n_devices, ram)
