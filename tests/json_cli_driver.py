"""Run many ``llmstab`` command lines, each in a forked child whose file descriptor 1 is a file.

Used by ``tests/test_json_outputs.py``: the heavy imports happen once, in the
parent, and each command line then runs in its own process (``os.fork``) with
standard output at the *descriptor* level pointing at a file, exactly as a
shell pipe would see it, so a banner a C solver prints on descriptor 1 lands in
that file. The parent's own descriptor 1 goes to a file too, so output printed
at import time is caught. Usage::

    python -m tests.json_cli_driver OUT_DIR TIMEOUT_S 'check --json a.yaml' 'region --json b.yaml' ...

writes ``OUT_DIR/<i>.out``, ``<i>.err`` and ``<i>.rc`` per command line and
``OUT_DIR/parent.out`` (what the imports printed).
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
from pathlib import Path


def _redirect(fd: int, path: Path) -> None:
    target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(target, fd)
    os.close(target)


def _child(argv: list[str], out: Path, timeout_s: int) -> None:
    from llmstab.checkers.cli.main import main

    _redirect(1, out.with_suffix(".out"))
    _redirect(2, out.with_suffix(".err"))
    signal.alarm(timeout_s)
    try:
        code = main(argv)
    except BaseException as exc:  # report, never hang the parent
        print(f"driver: {exc.__class__.__name__}: {exc}", file=sys.stderr)
        code = 99
    sys.stdout.flush()
    sys.stderr.flush()
    out.with_suffix(".rc").write_text(str(code))
    os._exit(0)


def run(out_dir: Path, timeout_s: int, lines: list[str]) -> None:
    """Run each command line in a forked child; results go to ``out_dir``."""
    _redirect(1, out_dir / "parent.out")
    import llmstab.checkers.cli.main as cli

    for module in sorted(set(cli.COMMANDS.values())):
        __import__(module)
    for i, line in enumerate(lines):
        pid = os.fork()
        if pid == 0:
            _child(shlex.split(line), out_dir / str(i), timeout_s)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    run(Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3:])
