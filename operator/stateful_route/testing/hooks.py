"""A container's exec hook (its preStop command) run on this machine, as kubelet runs it in the
container: with the container's literal and downward-API environment and kubelet's ``$(VAR)``
expansion, and this Python environment's commands (``stateful-route``) first on PATH."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Hook", "HookRun", "pre_stop_command"]

_VAR = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


@dataclass(frozen=True)
class HookRun:
    """One hook that ran: where, what, how it ended and how long it took."""

    namespace: str
    pod: str
    command: tuple[str, ...]
    returncode: int | None  # None: killed at the pod's deadline
    output: str
    seconds: float


def pre_stop_command(container: dict[str, Any]) -> list[str] | None:
    """The container's preStop exec command, if it has one."""
    command = ((container.get("lifecycle") or {}).get("preStop") or {}).get("exec", {}).get("command")
    return list(command) if command else None


def _expand(text: str, env: dict[str, str]) -> str:
    # Kubelet's rule: $(VAR) of a defined variable is replaced, anything else is left as written.
    return _VAR.sub(lambda m: env.get(m.group(1), m.group(0)), text)


def _field(pod: dict[str, Any], path: str) -> str:
    """A downward-API fieldPath: ``metadata.name``, ``status.podIP``, ``metadata.labels['key']``."""
    keyed = re.fullmatch(r"metadata\.(labels|annotations)\['(.+)'\]", path)
    if keyed:
        return str((pod["metadata"].get(keyed.group(1)) or {}).get(keyed.group(2), ""))
    value: Any = pod
    for part in path.split("."):
        value = value.get(part, {}) if isinstance(value, dict) else {}
    return value if isinstance(value, str) else ""


def environment(pod: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    env = {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    for var in container.get("env") or []:
        if "value" in var:
            env[var["name"]] = _expand(var["value"], env)
        elif ref := (var.get("valueFrom") or {}).get("fieldRef"):
            env[var["name"]] = _field(pod, ref["fieldPath"])
    return env


class Hook:
    """A hook started now; its output goes to a file, so a talkative one never blocks on a pipe."""

    def __init__(self, pod: dict[str, Any], container: dict[str, Any], command: list[str]) -> None:
        env = environment(pod, container)
        self.argv = [_expand(part, env) for part in command]
        self._where = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        self._output = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed in finish)
        self._started = time.monotonic()
        self.process = subprocess.Popen(self.argv, env=env, stdout=self._output, stderr=subprocess.STDOUT)

    def done(self) -> bool:
        return self.process.poll() is not None

    def finish(self) -> HookRun:
        """The hook's end: killed if it still runs (the grace period is over)."""
        if self.process.poll() is None:
            self.process.kill()
        code = self.process.wait()
        self._output.seek(0)
        output = self._output.read()
        self._output.close()
        return HookRun(*self._where, tuple(self.argv), code if code >= 0 else None, output,
                       time.monotonic() - self._started)  # fmt: skip
