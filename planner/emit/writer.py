"""The output directory of `apex emit` / `apex plan --emit`: refuse to touch user files, write our own.

A directory is writable when it is new, empty, or an earlier emit (it holds the `apex-emit.json` manifest that
lists the files that emit wrote). Writing into an earlier emit replaces only the files its manifest lists; any
other file whose path the new emit would use is an error, raised before anything is written.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from planner.emit.artifacts import EmittedFile
from simulator.errors import InputError

MANIFEST = "apex-emit.json"


def _earlier_files(directory: Path, flag: str) -> set[str]:
    try:
        data = json.loads((directory / MANIFEST).read_text())
        return set(data["files"]) | {MANIFEST}
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(
            f"{directory / MANIFEST} is not a manifest written by `apex emit` (expected JSON with a 'files' list); "
            "choose an empty or new directory",
            field=flag,
        ) from None


def check_out_dir(path: str | Path, *, flag: str) -> None:
    """Raise InputError unless `path` is new, an empty directory, or an earlier emit (nothing is overwritten)."""
    directory = Path(path)
    if directory.exists() and not directory.is_dir():
        raise InputError(f"{directory} exists and is not a directory", field=flag)
    if not directory.is_dir() or not any(directory.iterdir()):
        return
    if not (directory / MANIFEST).is_file():
        raise InputError(
            f"{directory} is not empty and holds no {MANIFEST} from an earlier `apex emit`; choose an empty or new "
            "directory (nothing the user wrote is overwritten)",
            field=flag,
        )
    _earlier_files(directory, flag)


def write_files(path: str | Path, files: list[EmittedFile], manifest: dict, *, flag: str) -> list[Path]:
    """Write `files` and the manifest into `path` (checked first); returns the paths written."""
    check_out_dir(path, flag=flag)
    directory = Path(path)
    earlier = _earlier_files(directory, flag) if (directory / MANIFEST).is_file() else set()
    names = [f.path for f in files]
    if len(set(names)) != len(names):
        raise ValueError(f"emit produced duplicate paths: {sorted(n for n in names if names.count(n) > 1)}")
    for name in names:
        target = directory / name
        if target.exists() and name not in earlier:
            raise InputError(
                f"{target} exists and was not written by the earlier emit in {directory}; move it away first "
                "(nothing the user wrote is overwritten)",
                field=flag,
            )
    for name in sorted(earlier - {MANIFEST}):
        stale = directory / name
        if stale.is_file():
            stale.unlink()
    written = []
    for f in files:
        target = directory / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(f.text)
        if f.executable:
            os.chmod(target, 0o755)
        written.append(target)
    manifest = {**manifest, "files": names}
    (directory / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    written.append(directory / MANIFEST)
    return written
