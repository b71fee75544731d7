"""systemd units for the gateway and the head-end, filled in for this installation."""

from __future__ import annotations

import shutil
import sys
from importlib import resources
from pathlib import Path

ROLES = ("gateway", "headend")


def unit_name(role: str) -> str:
    return f"meter-collector-{role}.service"


def render(role: str, config: str, collector: str | None = None) -> str:
    """The unit text, with ExecStart pointing at this installation's `collector`."""
    if role not in ROLES:
        raise ValueError(f"role {role!r}: use gateway or headend")
    exe = collector or shutil.which("collector") or str(Path(sys.executable).with_name(
        "collector"))
    template = (resources.files("collector.ops") / "systemd" / unit_name(role)).read_text()
    return template.replace("{collector}", exe).replace("{config}", config)


def install(role: str, dest: Path, config: str, collector: str | None = None) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / unit_name(role)
    path.write_text(render(role, config, collector))
    path.chmod(0o644)
    return path
