"""What a fresh interpreter has imported after running some code: tests of start-up cost.

This interpreter has loaded numpy and more for the other tests, so each probe is a new one.
"""

import json
import subprocess
import sys

__all__ = ["loaded_after"]


def loaded_after(code: str, names: tuple[str, ...]) -> list[str]:
    """The modules of ``names`` in ``sys.modules`` after running ``code`` in a fresh
    interpreter (its own output is ignored; ``SystemExit(0)`` of ``code`` is caught).

    Raises:
        AssertionError: ``code`` failed or exited with a non-zero status (its stderr).
    """
    probe = (
        "import json, sys\n"
        f"try:\n    exec({code!r})\n"
        "except SystemExit as done:\n    if done.code not in (0, None):\n        raise\n"
        "sys.stdout.flush()\n"
        "print('\\n' + json.dumps(sorted(sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    modules = json.loads(done.stdout.splitlines()[-1])
    return [name for name in names if name in modules]
