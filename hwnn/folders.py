"""Output folders written whole or not at all.

A command's output folder is filled in a fresh folder beside it, which then takes its place;
an error on the way leaves the old folder (or none) untouched. An existing folder is
replaced only when it is empty or is an earlier output of the same kind (it holds the kind's
marker file), never anything else a user keeps there. Files and folders get the permissions
the process's umask gives ordinary ones (not the 0600/0700 of temporary ones).
"""

import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["check_replaceable", "honour_umask", "replace_folder"]


def honour_umask(path):
    """Give ``path`` (a file or folder made by :mod:`tempfile`, 0600 or 0700) the permissions
    an ordinary file (0666) or folder (0777) gets under the process's umask."""
    mask = os.umask(0)
    os.umask(mask)
    os.chmod(path, (0o777 if Path(path).is_dir() else 0o666) & ~mask)


def check_replaceable(out_dir, marker, kind):
    """ValueError unless ``out_dir`` is missing, empty, or holds ``marker`` (a file name, or a
    tuple of them: an earlier hwnn ``kind`` folder)."""
    out_dir = Path(out_dir)
    markers = (marker,) if isinstance(marker, str) else marker
    if out_dir.exists() and (not out_dir.is_dir() or (
            any(out_dir.iterdir()) and not any((out_dir / name).is_file() for name in markers))):
        raise ValueError(f"{str(out_dir)!r} exists and is not an hwnn {kind} folder; refusing "
                         f"to overwrite it")


def replace_folder(out_dir, marker, kind, fill) -> Path:
    """Run ``fill(folder)`` on a fresh folder, then put it in place of ``out_dir``; return
    ``out_dir``. See :func:`check_replaceable` for what may be replaced."""
    out_dir = Path(out_dir)
    check_replaceable(out_dir, marker, kind)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        honour_umask(staging)
        fill(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
