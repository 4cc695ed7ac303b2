"""HumanEval candidates run in a separate Python process with a timeout; never in the runner's process.

The child runs in isolated mode (``python -I``) in an empty temporary folder, limits its own address space
(RLIMIT_AS) first, and is killed with its whole process group when the timeout passes. This contains
runaway loops, crashes and memory blow-ups; it is not a security sandbox (the code could still use the
network or the file system), so run untrusted model output only on a machine you can afford to lose.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ExecutionStatus = Literal["passed", "failed", "timeout", "no_code"]
MEMORY_LIMIT_BYTES = 1 << 30
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_IMPORT = re.compile(r"^(?:import|from)\s+\S.*$", re.MULTILINE)
_PRELUDE = f"import resource\nresource.setrlimit(resource.RLIMIT_AS, ({MEMORY_LIMIT_BYTES}, {MEMORY_LIMIT_BYTES}))\n"


@dataclass(frozen=True)
class ExecutionResult:
    status: ExecutionStatus
    seconds: float = 0.0
    detail: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def extract_code(text: str, entry_point: str) -> str:
    """The code in a reply: the fenced block defining `entry_point`, else the first Python/plain block,
    else the whole reply when it looks like code; "" when there is none."""
    blocks = [(language.lower(), body) for language, body in _FENCE.findall(text)]
    for _, body in blocks:
        if re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", body):
            return body.strip("\n")
    for language, body in blocks:
        if language in ("", "python", "py", "python3") and body.strip():
            return body.strip("\n")
    if re.search(r"^\s*(?:def|return|import|from)\b", text, re.MULTILINE):
        return text.strip("\n")
    return ""


def build_program(prompt: str, code: str, test: str, entry_point: str) -> str:
    """The file the child runs: the candidate (a whole function, or a body completing the prompt), the
    HumanEval test, and the call of `check`."""
    if re.search(rf"\bdef\s+{re.escape(entry_point)}\s*\(", code):
        imports = "\n".join(_IMPORT.findall(prompt))
        candidate = f"{imports}\n\n{code}" if imports else code
    else:
        candidate = prompt + code
    return f"{_PRELUDE}\n{candidate}\n\n{test}\n\ncheck({entry_point})\n"


def run_program(program: str, timeout_s: float = 10.0) -> ExecutionResult:
    """Run `program` in a child Python process; passed means exit status 0 within `timeout_s`."""
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="humaneval-") as folder:
        path = Path(folder) / "candidate.py"
        path.write_text(program)
        process = subprocess.Popen(
            [sys.executable, "-I", "-B", str(path)],
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        try:
            _, stderr = process.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            return ExecutionResult("timeout", time.monotonic() - started, f"killed after {timeout_s:g} s")
    seconds = time.monotonic() - started
    if process.returncode == 0:
        return ExecutionResult("passed", seconds)
    return ExecutionResult("failed", seconds, stderr.decode(errors="replace")[-500:])


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):  # it may end between the timeout and the kill
        os.killpg(process.pid, signal.SIGKILL)
    process.communicate()


def check_humaneval(reply: str, prompt: str, test: str, entry_point: str, timeout_s: float = 10.0) -> ExecutionResult:
    """Extract the code of `reply` and run it against the problem's test in a subprocess."""
    code = extract_code(reply, entry_point)
    if not code:
        return ExecutionResult("no_code", 0.0, "no code found in the reply")
    return run_program(build_program(prompt, code, test, entry_point), timeout_s)
