"""Ctrl-C and SIGTERM at the CLI boundary: exit 130 / 143 with one line on stderr, no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

LONG = {
    "model": "llama-3.1-8b",
    "cluster": {"gpu": "h100-sxm", "nodes": 1, "gpus_per_node": 2},
    "workload": {
        "requests": 1_000_000,  # minutes of simulation: it is always interrupted
        "arrival": {"process": "poisson", "rate": 50.0},
        "input_tokens": {"dist": "fixed", "value": 512},
        "output_tokens": {"dist": "fixed", "value": 64},
    },
    "goals": {"objective": "min_cost"},
}


def _cpu_s(pid: int) -> float:
    """CPU seconds the process has used (Linux /proc), 0 once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _run_and_signal(args: list[str], signum: int, after_cpu_s: float) -> tuple[int, str, str]:
    """Start `apex ARGS`, wait until it has done `after_cpu_s` of work (imports take about 1 s), signal it."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "planner.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while _cpu_s(proc.pid) < after_cpu_s and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=30)
    return proc.returncode, out, err


@pytest.mark.parametrize(
    ("command", "signum", "code", "word"),
    [
        (["simulate", "--plan", "tp=1"], signal.SIGINT, 130, "interrupted"),
        (["simulate", "--plan", "tp=1"], signal.SIGTERM, 143, "terminated"),
        (["plan", "--workers", "1"], signal.SIGTERM, 143, "terminated"),
    ],
    ids=["simulate-sigint", "simulate-sigterm", "plan-sigterm"],
)
def test_signal_exits_with_its_code_and_one_line(tmp_path, command, signum, code, word):
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(LONG))
    rc, out, err = _run_and_signal([command[0], str(path), *command[1:]], signum, after_cpu_s=1.8)
    assert rc == code, err
    lines = err.strip().splitlines()  # (a progress bar on a pipe leaves an empty line)
    assert len(lines) == 1 and lines[0].startswith(word), err
    assert "Traceback" not in out + err
