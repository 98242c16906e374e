"""bench/cpu.py: CPU time attributed to the processes a bench started (with their children), to
PostgreSQL's processes, and to the rest, from two /proc snapshots."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from bench import cpu
from bench.cpu import Proc


def test_it_attributes_each_process_to_the_nearest_named_ancestor():
    before = {10: Proc(1, "python", 1.0), 11: Proc(10, "gunicorn", 2.0), 12: Proc(11, "gunicorn", 3.0),
              20: Proc(1, "postgres", 5.0), 21: Proc(20, "postgres", 0.5), 30: Proc(1, "kworker/0:1", 0.0)}
    after = {10: Proc(1, "python", 1.5), 11: Proc(10, "gunicorn", 2.1), 12: Proc(11, "gunicorn", 4.0),
             13: Proc(11, "gunicorn", 0.25),  # started in between: counted from zero
             20: Proc(1, "postgres", 5.0), 21: Proc(20, "postgres", 1.5), 30: Proc(1, "kworker/0:1", 0.5)}
    spent = cpu.by_role(before, after, {"clients": 10, "web": 11})
    assert spent == pytest.approx({"clients": 0.5, "web": 0.1 + 1.0 + 0.25, "postgres": 1.0, "other": 0.5})


def test_it_does_not_count_a_reused_pid_s_earlier_time():
    before = {40: Proc(1, "sleep", 9.0)}
    after = {40: Proc(1, "bash", 0.2)}  # another program now holds the pid
    assert cpu.by_role(before, after, {})["other"] == pytest.approx(0.2)


def test_it_measures_a_real_process_s_cpu_time():
    burn = ("import sys, time\nsys.stdin.readline()\nend = time.process_time() + 0.3\n"
            "while time.process_time() < end: pass\nprint('done', flush=True)\nsys.stdin.readline()")
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        before = cpu.snapshot()
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "done"
        after = cpu.snapshot()  # the child still runs: its time is in /proc
        spent = cpu.by_role(before, after, {"child": child.pid})
        assert spent["child"] >= 0.25
        assert after[child.pid].ppid == os.getpid()
    finally:
        child.kill()
        child.wait(timeout=10)


def test_it_reads_the_machine_s_busy_and_total_time():
    busy, total = cpu.machine()
    assert 0 < busy < total
