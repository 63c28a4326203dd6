"""py-spy profile of routerd under load: record collapsed stacks, list the top self-time frames.

`record` starts `py-spy record --format raw --nonblocking` on a PID for a fixed time (the process
is not paused, so the profile barely disturbs it); `top_self` reads the collapsed stacks and
ranks functions (file and name, any line) by the samples in which they are the leaf frame.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.bench.procs import REPO, pinned

_LINE_NO = re.compile(r":\d+\)$")


def find_py_spy() -> str | None:
    """py-spy from .venv or PATH; installed into the running interpreter's env if missing
    (only `--profile` needs it, so it is not a dependency of the package)."""
    local = REPO / ".venv" / "bin" / "py-spy"
    found = str(local) if local.exists() else shutil.which("py-spy")
    if found is None:
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "py-spy"], check=False)
        beside = Path(sys.executable).with_name("py-spy")
        found = str(beside) if beside.exists() else shutil.which("py-spy")
    return found


def record(
    pid: int, seconds: int, out: Path, cpu: int | None, rate: int = 250
) -> subprocess.Popen[bytes]:
    exe = find_py_spy()
    if exe is None:
        raise RuntimeError("py-spy not found: .venv/bin/pip install py-spy")
    cmd = [exe, "record", "--pid", str(pid), "--duration", str(seconds), "--rate", str(rate)]
    cmd += ["--format", "raw", "--nonblocking", "-o", str(out)]
    return subprocess.Popen(pinned(cmd, cpu), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def top_self(raw: Path, n: int = 15) -> tuple[int, list[tuple[str, int]]]:
    """(total samples, [(function, self samples)] best first) from py-spy's raw output."""
    counts: dict[str, int] = {}
    total = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, num = line.rpartition(" ")
        if not stack or not num.isdigit():
            continue
        leaf = _LINE_NO.sub(")", stack.split(";")[-1])
        counts[leaf] = counts.get(leaf, 0) + int(num)
        total += int(num)
    return total, sorted(counts.items(), key=lambda kv: -kv[1])[:n]
