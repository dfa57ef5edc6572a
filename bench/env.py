"""Where the harness runs and what it runs with: settings, the device and its label, provenance.

* **Settings**: the reference cache (``--cache``, else ``$UNLEARNBENCH_CACHE``, else
  ``~/.cache/unlearnbench``) and the device (``cpu``, ``cuda``, ``cuda:N``).
* **The device label** stored in every row, and its parser: on the CPU ``cpu (N threads, ISA)``
  with the intra-op thread count and the vector instruction set torch dispatches to. Both change
  float reductions (1 and 2 threads differ in the last bits; AVX2 and AVX512 kernels too), so a
  regression check reads them back to know what it can match exactly.
* **Provenance**: package, torch and git versions stored with every row, and the row timestamp.

The lowest layer of the package: it imports nothing of ``bench``.
"""
from __future__ import annotations

import functools
import os
import re
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import torch

#: The repository root when running from a checkout (``git`` is asked about it for provenance).
SOURCE_ROOT = Path(__file__).resolve().parent.parent


def default_cache_dir() -> Path:
    """``$UNLEARNBENCH_CACHE``, else ``~/.cache/unlearnbench``."""
    env = os.environ.get("UNLEARNBENCH_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "unlearnbench"


_DEVICE = re.compile(r"cpu|cuda(:\d+)?")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"cuda:N"``; a loud error when CUDA is asked for but absent.

    The name is matched before torch parses it: torch's own error for ``tpu`` or ``cuda:x``
    lists its twenty device types, none of which but these two the harness runs on."""
    if not _DEVICE.fullmatch(str(device)):
        raise ValueError(f"unsupported device {str(device)!r}; use cpu, cuda or cuda:N")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was requested but torch.cuda.is_available() is False; use --device cpu")
    return dev


def device_label(device: torch.device) -> str:
    """The row's device: ``cpu (N threads, ISA)`` on the CPU (see the module docstring), else
    ``cuda:0 (NVIDIA H100 ...)`` — the device and the name of the card."""
    if device.type == "cpu":
        return f"cpu ({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})"
    name = torch.cuda.get_device_name(device) if torch.cuda.is_available() else ""
    return f"{device} ({name})" if name else str(device)


@dataclass(frozen=True)
class CpuSetting:
    """What a CPU device label says: the thread count and the instruction set ("" in older rows)."""

    threads: int
    isa: str


_CPU_LABEL = re.compile(r"cpu \((\d+) threads?(?:, (\w+))?\)")


def parse_device_label(label: str) -> CpuSetting | None:
    """The inverse of :func:`device_label` on the CPU: ``"cpu (2 threads, AVX512)"`` →
    ``CpuSetting(2, "AVX512")``; ``"cpu (2 threads)"`` (older rows) → ``CpuSetting(2, "")``;
    anything else (a GPU, no label) → ``None``."""
    match = _CPU_LABEL.fullmatch(label.strip())
    return CpuSetting(int(match.group(1)), match.group(2) or "") if match else None


@functools.cache
def environment() -> dict[str, str]:
    """Versions stored with every row: the package, torch, and the git commit of the source tree
    (``-dirty`` when tracked files are modified; empty outside a checkout)."""
    try:
        package = metadata.version("unlearnbench")
    except metadata.PackageNotFoundError:
        package = "unknown"
    try:
        commit = subprocess.run(["git", "-C", str(SOURCE_ROOT), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(SOURCE_ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
        commit = f"{commit}-dirty" if commit and dirty else commit
    except (OSError, subprocess.SubprocessError):
        commit = ""
    return {"package_version": package, "torch_version": torch.__version__, "git_commit": commit}


def now() -> str:
    """The row timestamp: UTC, ISO 8601, to the second."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
