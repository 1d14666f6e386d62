"""hack/image.sh picks a usable container engine or says clearly that none exists.

No container engine runs on the machines this project is developed on, so the engines are stand-in
scripts placed first on PATH: one whose `info` fails (installed but unusable, like docker without its
daemon) and one that records what it was asked to build. The script's own logic is what is tested.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "hack" / "image.sh"
VERSION = next(line.split("=", 1)[1].strip() for line in (REPO / "setup.cfg").read_text().splitlines()
               if line.startswith("version"))

UNUSABLE = """#!/bin/sh
[ "$1" = info ] && { echo "Cannot connect to the engine daemon. Is it running?" >&2; exit 1; }
exit 99
"""

RECORDING = """#!/bin/sh
[ "$1" = info ] && exit 0
if [ "$1" = build ]; then
    echo "$@" >> "$RECORD/calls"
    for last; do :; done
    (cd "$last" && find . -type f | sort) > "$RECORD/context"
    exit 0
fi
exit 99
"""


def _bin(tmp: Path, **engines: str) -> Path:
    d = tmp / "bin"
    d.mkdir()
    for name, text in engines.items():
        (d / name).write_text(text)
        (d / name).chmod(0o755)
    return d


def _run(bindir: Path, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": f"{bindir}:/usr/bin:/bin", "HOME": str(tmp), "RECORD": str(tmp), "TMPDIR": str(tmp), **env}
    return subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=full, timeout=60)


def test_no_usable_engine_fails_and_says_why(tmp_path: Path) -> None:
    bindir = _bin(tmp_path, podman=UNUSABLE, docker=UNUSABLE, buildah=UNUSABLE)
    proc = _run(bindir, tmp_path)
    assert proc.returncode == 3
    assert "no usable container engine" in proc.stderr
    for engine in ("podman", "docker", "buildah"):
        assert f"{engine}: installed at {bindir / engine}, but '{engine} info' failed" in proc.stderr
    assert "Is it running?" in proc.stderr


def test_an_engine_that_is_not_installed_is_named(tmp_path: Path) -> None:
    bindir = _bin(tmp_path)
    proc = _run(bindir, tmp_path, CONTAINER_ENGINE="buildah", PATH=str(bindir) + ":/bin:/usr/bin")
    if Path("/usr/bin/buildah").exists() or Path("/bin/buildah").exists():
        pytest.fail("buildah is installed on this machine: this test needs a machine without it")
    assert proc.returncode == 3
    assert "buildah: not installed" in proc.stderr


def test_unknown_engine_is_refused(tmp_path: Path) -> None:
    proc = _run(_bin(tmp_path), tmp_path, CONTAINER_ENGINE="nerdctl")
    assert proc.returncode == 2
    assert "not one of podman, docker, buildah" in proc.stderr


def test_first_usable_engine_builds_three_targets_from_a_clean_context(tmp_path: Path) -> None:
    bindir = _bin(tmp_path, podman=UNUSABLE, docker=RECORDING)
    proc = _run(bindir, tmp_path, IMAGE_PREFIX="registry.example.com/vm/")
    assert proc.returncode == 0, proc.stderr
    calls = (tmp_path / "calls").read_text().splitlines()
    assert len(calls) == 3
    for call, target in zip(calls, ("controller", "agent", "launcher"), strict=True):
        assert f"--target {target} -t registry.example.com/vm/{target}:{VERSION}" in call
    context = (tmp_path / "context").read_text().split()
    assert {"./Containerfile", "./setup.cfg", "./pyproject.toml", "./README.md",
            "./virtmigrate/__init__.py"} <= set(context)
    assert not [f for f in context if "__pycache__" in f or f.startswith("./.venv") or f.endswith(".pyc")]
    assert not any(p.name.startswith("virtmigrate-image.") for p in tmp_path.iterdir())  # context removed


def test_containerfile_runs_as_non_root_with_three_entry_points() -> None:
    text = (REPO / "Containerfile").read_text()
    stages = [line.split()[-1] for line in text.splitlines() if line.startswith("FROM ")]
    assert stages == ["build", "runtime", "agent", "launcher", "controller"]
    assert "USER 65532:65532" in text
    for program in ("virtmigrate-controller", "virtmigrate-agent", "virtmigrate-launcher"):
        assert f'ENTRYPOINT ["{program}"]' in text
    assert os.access(SCRIPT, os.X_OK)
