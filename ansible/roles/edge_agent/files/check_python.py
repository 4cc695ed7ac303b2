"""Exit 1, saying why, when the service user could not run this Python (or a given venv's Python).

Run by the Python the venv will be built with (`edge_agent_python`); further arguments are interpreters to check
as well (an existing venv's bin/python). The service user is neither root nor the owner of the interpreter, so
every directory on the interpreter's real path must let other users through (x) and the file must be readable and
executable by them: a pyenv Python under /root (mode 0700) is not.
"""

import os
import stat
import sys


def problem(given: str) -> str:
    real = os.path.realpath(given)
    if not os.path.exists(real):
        return ""
    parts = real.split(os.sep)
    for index in range(1, len(parts)):
        folder = os.sep.join(parts[:index]) or os.sep
        mode = os.stat(folder).st_mode
        if not mode & stat.S_IXOTH:
            return f"{given} is {real}, under {folder} (mode {oct(mode & 0o777)}), which other users cannot enter"
    mode = os.stat(real).st_mode
    if not (mode & stat.S_IXOTH and mode & stat.S_IROTH):
        return f"{given} is {real} (mode {oct(mode & 0o777)}), which other users cannot run"
    return ""


found = [text for text in (problem(path) for path in [sys.executable, *sys.argv[1:]]) if text]
if found:
    print("; ".join(found))
    sys.exit(1)
print(f"ok: {os.path.realpath(sys.executable)}")
