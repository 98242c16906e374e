"""CPU time by role on this machine (Linux /proc), to say what a bench's numbers are bound by.

A snapshot reads every process's user+system time; `by_role` attributes the difference between two
snapshots to the process trees the bench started (each named), to PostgreSQL's server processes,
and to everything else, so a run can print "CPU ms per claim: clients, web, fleet, PostgreSQL".
"""
from __future__ import annotations

import os
from dataclasses import dataclass

_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Proc:
    ppid: int
    comm: str
    cpu_s: float


def snapshot() -> dict[int, Proc]:
    procs: dict[int, Proc] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:  # gone meanwhile
            continue
        # comm is in parentheses and may hold spaces: split after its closing one.
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat[stat.rindex(")") + 2:].split()
        procs[int(entry)] = Proc(ppid=int(fields[1]), comm=comm, cpu_s=(int(fields[11]) + int(fields[12])) / _TICKS)
    return procs


def machine() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, every CPU (/proc/stat): the share of
    the machine a run kept busy is Δbusy / Δtotal. Summing processes would not do: each one's time
    is counted in 10 ms ticks, and over a short run the rounding of dozens of processes adds up."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest is inside user)
    return (total - idle) / _TICKS, total / _TICKS


def by_role(before: dict[int, Proc], after: dict[int, Proc], roots: dict[str, int]) -> dict[str, float]:
    """CPU seconds spent between the snapshots: per named root process (with all its descendants),
    "postgres" (the server's processes), and "other". A process that exited in between is not
    counted; one started in between counts from zero."""
    role_of_root = {pid: name for name, pid in roots.items()}

    def role(pid: int) -> str:
        seen = 0
        while pid in after and seen < 64:
            if pid in role_of_root:
                return role_of_root[pid]
            if after[pid].comm.startswith("postgres"):
                return "postgres"
            pid, seen = after[pid].ppid, seen + 1
        return "other"

    spent: dict[str, float] = {name: 0.0 for name in [*roots, "postgres", "other"]}
    for pid, proc in after.items():
        earlier = before.get(pid)
        delta = proc.cpu_s - (earlier.cpu_s if earlier and earlier.comm == proc.comm else 0.0)
        if delta > 0:
            spent[role(pid)] += delta
    return spent
