"""Output paths, checked before any work starts: nothing the user wrote is overwritten, and a missing parent
directory is an error at once (exit 2), not after a long simulation or search.

* `check_new_file(path, flag)` — a file to create: it must not exist, and its directory must.
* `check_report_dir(path, flag)` — `apex plan --report DIR`: DIR may be missing (it is created), empty, or an
  earlier APEX report (`REPORT_MARKER` lists what that report wrote, and DIR holds nothing else); anything else
  is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

from planner.errors import InputError

REPORT_MARKER = "apex-report.json"


def _check_parent(path: Path, flag: str) -> None:
    parent = path.parent
    if not parent.exists():
        raise InputError(
            f"the directory {str(parent)!r} of {str(path)!r} does not exist; create it first", field=flag
        )
    if not parent.is_dir():
        raise InputError(
            f"{str(parent)!r} is not a directory, so {str(path)!r} cannot be written", field=flag
        )


def check_new_file(path: str | Path, flag: str, *, suffixes: tuple[str, ...] = ()) -> Path:
    """`path` as a Path, after checking that it can be created without overwriting anything."""
    path = Path(path)
    if suffixes and path.suffix.lower() not in suffixes:
        raise InputError(
            f"{str(path)!r}: expected a file name ending in {' or '.join(suffixes)}, got {path.suffix or 'none'}",
            field=flag,
        )
    if path.exists():
        raise InputError(
            f"{path} exists; choose another path or delete it first (nothing is overwritten)", field=flag
        )
    _check_parent(path, flag)
    return path


def earlier_report_files(directory: Path) -> set[str] | None:
    """The files an earlier `--report` wrote into `directory` (from its marker), or None if it is not one."""
    marker = directory / REPORT_MARKER
    if not marker.is_file():
        return None
    try:
        data = json.loads(marker.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, list) or not all(isinstance(f, str) for f in files):
        return None
    return {*files, REPORT_MARKER}


def check_report_dir(path: str | Path, flag: str = "--report") -> Path:
    """`path` as a Path, after checking that a report can be written there without overwriting user files."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"{path} is a file; --report takes a directory (nothing is overwritten)", field=flag)
    if not path.exists():
        _check_parent(path, flag)
        return path
    entries = {p.name for p in path.iterdir()}
    if not entries:
        return path
    known = earlier_report_files(path)
    if known is None:
        raise InputError(
            f"{path} is not empty and is not an earlier APEX report; choose a new or empty directory "
            "(nothing is overwritten)",
            field=flag,
        )
    others = sorted(entries - known)
    if others:
        raise InputError(
            f"{path} is an earlier APEX report but also holds other files ({', '.join(others[:5])}); "
            "choose a new or empty directory (nothing is overwritten)",
            field=flag,
        )
    return path


def mark_report(directory: Path, written: list[Path]) -> Path:
    """Write the marker that makes `directory` recognisable as an APEX report (what it holds)."""
    marker = directory / REPORT_MARKER
    marker.write_text(
        json.dumps({"apex_report": 1, "files": sorted(p.name for p in written)}, indent=1) + "\n"
    )
    return marker
