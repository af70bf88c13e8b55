"""The release a user runs is visible: ``stateful-route --version`` and the package's ``__version__``."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import stateful_route

CLI = str(Path(sys.executable).parent / "stateful-route")


def test_version_flag_prints_the_installed_release_and_exits_0():
    done = subprocess.run([CLI, "--version"], capture_output=True, text=True, timeout=30, check=False)
    assert (done.returncode, done.stdout, done.stderr) == (
        0,
        f"stateful-route {version('stateful-route')}\n",
        "",
    )
    assert stateful_route.__version__ == version("stateful-route")
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:[-+.][0-9A-Za-z.-]+)?", stateful_route.__version__)


def test_no_arguments_prints_the_help_and_no_error_line():
    done = subprocess.run([CLI], capture_output=True, text=True, timeout=30, check=False)
    assert "Usage: stateful-route" in done.stdout
    assert "error:" not in done.stdout + done.stderr
