"""Where the machine's CPU went during a measurement: server, PostgreSQL, load generator, everything."""

import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces; the fields after it are space-separated.
    return raw[raw.rindex(")") + 2 :].split()


def _process_cpu_s(pid: int) -> float:
    fields = _stat(pid)
    if fields is None:
        return 0.0
    # fields[11] and [12] are utime and stime (proc(5) fields 14 and 15).
    return (int(fields[11]) + int(fields[12])) / TICK


def _postgres_cpu_s(database: str) -> float:
    """PostgreSQL processes working for the bench: backends of its database and the shared auxiliary processes
    (WAL writer, checkpointer, ...). Backends of other databases on the same server are left out, and so is
    a backend that exits within the interval (its time then shows as "other")."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        is_backend = "(" in title or "[local]" in title
        if is_backend and f" {database} " not in title:
            continue
        total += _process_cpu_s(int(entry.name))
    return total


def processes_cpu_s(pids: list[int]) -> float:
    """CPU seconds (user + system) the given processes have used so far."""
    return sum(_process_cpu_s(pid) for pid in pids)


def postgres_cpu_s(database: str) -> float:
    """CPU seconds so far of the PostgreSQL processes working for `database` (see _postgres_cpu_s)."""
    return _postgres_cpu_s(database)


def postgres_exited_cpu_s() -> float:
    """CPU seconds of every PostgreSQL process that has exited so far (the postmaster's reaped children: cutime +
    cstime), whatever its database: a backend per connection that closes is otherwise missed by postgres_cpu_s."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if (entry / "comm").read_text().strip() != "postgres":
                continue
            fields = _stat(int(entry.name))
            parent = Path(f"/proc/{fields[1]}/comm").read_text().strip() if fields else "postgres"
        except OSError:
            continue
        if fields is not None and parent != "postgres":  # the postmaster: the one postgres not started by another
            # fields[13] and [14] are cutime and cstime (proc(5) fields 16 and 17).
            return (int(fields[13]) + int(fields[14])) / TICK
    return 0.0


def self_cpu_s() -> float:
    """CPU seconds this process (the load generator) has used so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_s() -> float:
    """Busy CPU seconds over all cores since boot."""
    return _machine_busy_s()[0]


def _machine_busy_s() -> tuple[float, float]:
    """(busy, total) CPU seconds over all cores since boot, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # guest time is already counted in user
    return (total - idle) / TICK, total / TICK


@dataclass(frozen=True)
class CpuSnapshot:
    server_s: float
    postgres_s: float
    loadgen_s: float
    machine_busy_s: float
    machine_total_s: float


def snapshot(server_pids: list[int], database: str) -> CpuSnapshot:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    busy, total = _machine_busy_s()
    return CpuSnapshot(
        server_s=sum(_process_cpu_s(pid) for pid in server_pids),
        postgres_s=_postgres_cpu_s(database),
        loadgen_s=usage.ru_utime + usage.ru_stime,
        machine_busy_s=busy,
        machine_total_s=total,
    )


def cores_used(before: CpuSnapshot, after: CpuSnapshot, wall_s: float) -> dict[str, float]:
    """Average cores busy per group over the interval (2.0 = both cores of this machine, flat out)."""
    server = (after.server_s - before.server_s) / wall_s
    postgres = (after.postgres_s - before.postgres_s) / wall_s
    loadgen = (after.loadgen_s - before.loadgen_s) / wall_s
    machine = (after.machine_busy_s - before.machine_busy_s) / wall_s
    return {
        "server": round(server, 2),
        "postgres": round(postgres, 2),
        "load_generator": round(loadgen, 2),
        "other": round(max(0.0, machine - server - postgres - loadgen), 2),
        "machine_total": round(machine, 2),
        "machine_utilisation": round(
            (after.machine_busy_s - before.machine_busy_s) / max(after.machine_total_s - before.machine_total_s, 1e-9),
            3,
        ),
    }


def busy_cores(interval_s: float = 2.0) -> float:
    """How many cores the machine kept busy over the next `interval_s` seconds."""
    busy0, _ = _machine_busy_s()
    time.sleep(interval_s)
    busy1, _ = _machine_busy_s()
    return (busy1 - busy0) / interval_s


def wait_until_quiet(*, threshold_cores: float, max_wait_s: float, log: bool = True) -> float:
    """Wait (at most `max_wait_s`) until other work on the machine uses under `threshold_cores`; return the load
    last seen. Other sessions share this machine; a measurement taken under their load says little."""
    deadline = time.monotonic() + max_wait_s
    load = busy_cores()
    while load >= threshold_cores and time.monotonic() < deadline:
        if log:
            print(f"       machine busy with other work ({load:.2f} cores); waiting ...", flush=True)
        time.sleep(5)
        load = busy_cores()
    return round(load, 2)
