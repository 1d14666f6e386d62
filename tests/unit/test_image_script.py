"""hack/image.sh: the image is rebuilt only when its sources change, and a missing tool is named.

The tools (mmdebstrap, buildah, the venv's python) are stand-in scripts passed through the script's
MMDEBSTRAP/BUILDAH/PYTHON variables, so nothing here depends on what this machine has installed; they
record what they were asked to do and leave the files the real tools would. The script runs from a copy
of the repository's image sources, so a test can change a source file. The real build is exercised by
tests/integration/test_image_containers.py, which runs the built image.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

MMDEBSTRAP = """#!/bin/sh
echo "mmdebstrap $*" >> "$RECORD/calls"
for a; do case "$a" in *.part) echo rootfs > "$a";; esac; done
"""

PYTHON = """#!/bin/sh
echo "python $*" >> "$RECORD/calls"
while [ $# -gt 0 ]; do
    [ "$1" = --wheel-dir ] && { mkdir -p "$2"; touch "$2/virtmigrate-0.1.0-py3-none-any.whl"; }
    shift
done
"""

BUILDAH = """#!/bin/sh
while [ $# -gt 0 ]; do case "$1" in --root|--runroot|--storage-driver) shift 2;; *) break;; esac; done
echo "buildah $*" >> "$RECORD/calls"
if [ "$1" = push ]; then
    for dest; do :; done
    dir=${dest#oci:}; dir=${dir%%:*}
    mkdir -p "$dir" && echo '{"schemaVersion": 2}' > "$dir/index.json"
fi
"""


def _tools(tmp: Path) -> dict[str, str]:
    d = tmp / "tools"
    d.mkdir()
    out = {}
    for name, text in (("MMDEBSTRAP", MMDEBSTRAP), ("PYTHON", PYTHON), ("BUILDAH", BUILDAH)):
        (d / name.lower()).write_text(text)
        (d / name.lower()).chmod(0o755)
        out[name] = str(d / name.lower())
    return out


def _sources(tmp: Path) -> Path:
    """A copy of what the script hashes and packs: a repository of its own."""
    repo = tmp / "repo"
    (repo / "hack").mkdir(parents=True)
    shutil.copy(REPO / "hack" / "image.sh", repo / "hack" / "image.sh")
    for f in ("Containerfile", "setup.cfg", "pyproject.toml", "README.md"):
        shutil.copy(REPO / f, repo / f)
    shutil.copytree(REPO / "virtmigrate", repo / "virtmigrate",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return repo


def _run(repo: Path, tmp: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": "/usr/bin:/bin", "HOME": str(tmp), "RECORD": str(tmp), "TMPDIR": str(tmp),
            "VIRTMIGRATE_CACHE": str(tmp / "cache"), **env}
    return subprocess.run(["bash", str(repo / "hack" / "image.sh")], capture_output=True, text=True, env=full,
                          timeout=60)


def _calls(tmp: Path) -> list[str]:
    f = tmp / "calls"
    calls = f.read_text().splitlines() if f.exists() else []
    f.unlink(missing_ok=True)
    return calls


def test_builds_three_targets_into_one_archive_then_reuses_it_until_a_source_changes(tmp_path: Path) -> None:
    repo, tools = _sources(tmp_path), _tools(tmp_path)
    first = _run(repo, tmp_path, **tools)
    assert first.returncode == 0, first.stderr
    archive = Path(first.stdout.splitlines()[-1])
    assert archive.is_file() and archive.parent == tmp_path / "cache" / "images"
    calls = _calls(tmp_path)
    assert sum(c.startswith("mmdebstrap ") for c in calls) == 1
    assert any(c.startswith("python -m pip wheel") for c in calls)
    buds = [c for c in calls if c.startswith("buildah bud")]
    assert [b.split("--target ")[1].split()[0] for b in buds] == ["controller", "agent", "launcher"]
    assert all("--isolation chroot" in b for b in buds)
    tag = archive.name.removeprefix("virtmigrate-").removesuffix(".oci.tar")
    pushes = [c for c in calls if c.startswith("buildah push")]
    assert [p.rsplit(":", 2)[-2:] for p in pushes] == [[f"virtmigrate/{t}", tag]
                                                       for t in ("controller", "agent", "launcher")]

    again = _run(repo, tmp_path, **tools)
    assert again.returncode == 0 and again.stdout.splitlines()[-1] == str(archive)
    assert _calls(tmp_path) == [], "unchanged sources must not rebuild anything"

    with (repo / "virtmigrate" / "__init__.py").open("a") as f:
        f.write("# a change\n")
    changed = _run(repo, tmp_path, **tools)
    assert changed.returncode == 0, changed.stderr
    assert changed.stdout.splitlines()[-1] != str(archive)
    calls = _calls(tmp_path)
    assert any(c.startswith("buildah bud") for c in calls)
    assert not any(c.startswith("mmdebstrap") for c in calls), "the Debian base is cached by its package list"


def test_only_the_newest_archives_are_kept(tmp_path: Path) -> None:
    repo, tools = _sources(tmp_path), _tools(tmp_path)
    built = []
    for i in range(3):
        with (repo / "virtmigrate" / "__init__.py").open("a") as f:
            f.write(f"# change {i}\n")
        proc = _run(repo, tmp_path, **tools, IMAGE_KEEP="2")
        assert proc.returncode == 0, proc.stderr
        built.append(Path(proc.stdout.splitlines()[-1]))
    assert sorted((tmp_path / "cache" / "images").glob("virtmigrate-*.oci.tar")) == sorted(built[1:])


def test_a_missing_tool_is_named_with_the_package_that_provides_it(tmp_path: Path) -> None:
    repo, tools = _sources(tmp_path), _tools(tmp_path)
    proc = _run(repo, tmp_path, **{**tools, "BUILDAH": str(tmp_path / "nowhere" / "buildah")})
    assert proc.returncode == 3
    assert f"{tmp_path / 'nowhere' / 'buildah'} (Debian package buildah)" in proc.stderr
    assert _calls(tmp_path) == [], "nothing is built without every tool"
