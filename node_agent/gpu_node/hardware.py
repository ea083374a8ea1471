"""What this machine has (for the GPU record) and how busy it is (for heartbeats).

GPUs come from `nvidia-smi` when it is on PATH; CPU, memory and OS from psutil and platform.
"""

from __future__ import annotations

import csv
import io
import logging
import platform
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psutil

log = logging.getLogger(__name__)

# One query serves both registration (name, memory, driver) and heartbeats (utilisation, memory used, temperature).
NVIDIA_FIELDS = (
    "index",
    "name",
    "memory.total",
    "memory.used",
    "utilization.gpu",
    "temperature.gpu",
    "driver_version",
)
NVIDIA_SMI_TIMEOUT_S = 10
_MISSING = {"", "n/a", "[n/a]", "[not supported]", "not supported", "[unknown error]", "[insufficient permissions]"}
_UNITS = (" MiB", " MB", " %", " C", " W", " MHz")


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    memory_total_mb: float | None = None
    memory_used_mb: float | None = None
    utilization: float | None = None
    temperature_c: float | None = None
    driver_version: str | None = None


def _clean(value: str) -> str | None:
    value = value.strip()
    if value.lower() in _MISSING:
        return None
    for unit in _UNITS:  # tolerate output produced without `nounits`
        if value.endswith(unit):
            return value[: -len(unit)].strip()
    return value


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def parse_nvidia_smi_csv(text: str, fields: tuple[str, ...] = NVIDIA_FIELDS) -> list[GpuInfo]:
    """Rows of `nvidia-smi --query-gpu=<fields> --format=csv,noheader,nounits`; malformed rows are skipped."""
    gpus: list[GpuInfo] = []
    for position, row in enumerate(csv.reader(io.StringIO(text), skipinitialspace=True)):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(fields):
            log.warning("ignoring an nvidia-smi line with %d fields (expected %d): %r", len(row), len(fields), row)
            continue
        cells = {name: _clean(cell) for name, cell in zip(fields, row, strict=True)}
        index = _number(cells.get("index"))
        gpus.append(
            GpuInfo(
                index=int(index) if index is not None else position,
                name=cells.get("name") or "Unknown GPU",
                memory_total_mb=_number(cells.get("memory.total")),
                memory_used_mb=_number(cells.get("memory.used")),
                utilization=_number(cells.get("utilization.gpu")),
                temperature_c=_number(cells.get("temperature.gpu")),
                driver_version=cells.get("driver_version"),
            )
        )
    return gpus


def query_gpus(
    *,
    which: Callable[[str], str | None] = shutil.which,
    run: Callable[..., subprocess.CompletedProcess] = subprocess.run,
) -> list[GpuInfo]:
    """The GPUs nvidia-smi reports; [] when it is absent or fails (no driver, no GPU)."""
    binary = which("nvidia-smi")
    if binary is None:
        return []
    try:
        done = run(
            [binary, f"--query-gpu={','.join(NVIDIA_FIELDS)}", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=NVIDIA_SMI_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("nvidia-smi could not run: %s", exc)
        return []
    if done.returncode != 0:
        log.warning("nvidia-smi failed (exit %d): %s", done.returncode, (done.stdout + done.stderr).strip()[:200])
        return []
    return parse_nvidia_smi_csv(done.stdout)


# --- The machine, for the GPU record ---------------------------------------------------------------


def _size(n_bytes: float) -> str:
    gib = n_bytes / 2**30
    return f"{gib:.0f} GB" if gib >= 10 else f"{gib:.1f} GB"


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        for line in cpuinfo.read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model", "Hardware") and value.strip():
                return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_frequency() -> str:
    try:
        freq = psutil.cpu_freq()
    except (OSError, NotImplementedError, FileNotFoundError):
        freq = None
    mhz = (freq.max or freq.current) if freq else 0
    return f"{mhz / 1000:.2f} GHz" if mhz else "unknown"


def os_name_version() -> tuple[str, str]:
    try:
        release = platform.freedesktop_os_release()
        return release.get("NAME", platform.system()), release.get("VERSION_ID", platform.release())
    except OSError:
        return platform.system(), platform.release()


def describe_gpus(gpus: list[GpuInfo]) -> str:
    """gpu_info: the model names (the server derives gpu_model from it), memory and driver."""
    if not gpus:
        return "none"
    names: dict[str, int] = {}
    for gpu in gpus:
        names[gpu.name] = names.get(gpu.name, 0) + 1
    label = " + ".join(name if len(names) == 1 else f"{count} x {name}" for name, count in names.items())
    details = []
    memories = {g.memory_total_mb for g in gpus if g.memory_total_mb is not None}
    if len(memories) == 1:
        details.append(f"{next(iter(memories)):.0f} MiB")
    drivers = {g.driver_version for g in gpus if g.driver_version}
    if drivers:
        details.append("driver " + "/".join(sorted(drivers)))
    return f"{label} ({', '.join(details)})"[:255] if details else label[:255]


def gpu_record(gpus: list[GpuInfo], *, region: str = "", price_per_hour: Decimal | None = None) -> dict[str, Any]:
    """The body of POST /api/v1/gpu/list/ for this machine."""
    vm = psutil.virtual_memory()
    swap = psutil.swap_memory()
    os_name, os_version = os_name_version()
    memory = [g.memory_total_mb for g in gpus if g.memory_total_mb]
    record: dict[str, Any] = {
        "gpu_info": describe_gpus(gpus),
        "cpu_name": cpu_name()[:255],
        "cpu_core": str(psutil.cpu_count(logical=False) or psutil.cpu_count() or 1),
        "cpu_frequency": cpu_frequency(),
        "total_memory": _size(vm.total),
        "total_swap": _size(swap.total),
        "ram": _size(vm.total),
        "os_name": os_name[:128],
        "os_version": os_version[:128],
        "gpu_count": min(len(gpus), 64),
        # Per GPU, in GB as the marketplace lists them (81559 MiB -> 80).
        "gpu_memory_gb": max(1, round(min(memory) / 1024)) if memory else None,
    }
    if region:
        record["region"] = region
    if price_per_hour is not None:
        record["price_per_hour"] = str(price_per_hour)
    return record


# --- Live metrics, for heartbeats -------------------------------------------------------------------


def _drop_none(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def metrics(gpus: list[GpuInfo]) -> dict[str, Any]:
    """The heartbeat's `metrics`: totals across GPUs plus a per-GPU list; unknown figures are left out."""
    vm = psutil.virtual_memory()
    result: dict[str, Any] = {
        "cpu_percent": min(100.0, max(0.0, psutil.cpu_percent(interval=None))),
        "ram_used_mb": round((vm.total - vm.available) / 2**20, 1),
        "ram_total_mb": round(vm.total / 2**20, 1),
    }
    if gpus:
        utils = [g.utilization for g in gpus if g.utilization is not None]
        used = [g.memory_used_mb for g in gpus if g.memory_used_mb is not None]
        total = [g.memory_total_mb for g in gpus if g.memory_total_mb is not None]
        temps = [g.temperature_c for g in gpus if g.temperature_c is not None]
        result.update(
            _drop_none(
                {
                    "gpu_utilization": round(sum(utils) / len(utils), 1) if utils else None,
                    "gpu_memory_used_mb": sum(used) if used else None,
                    "gpu_memory_total_mb": sum(total) if total else None,
                    "gpu_temperature_c": max(temps) if temps else None,
                }
            )
        )
        result["gpus"] = [
            _drop_none(
                {
                    "index": g.index,
                    "name": g.name[:128],
                    "utilization": g.utilization,
                    "memory_used_mb": g.memory_used_mb,
                    "memory_total_mb": g.memory_total_mb,
                    "temperature_c": g.temperature_c,
                }
            )
            for g in gpus[:64]
        ]
    return result
