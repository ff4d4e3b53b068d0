"""Output folders written whole or not at all.

A command's output folder is filled in a fresh folder beside it, which then takes its place;
an error on the way leaves the old folder (or none) untouched. An existing folder is
replaced only when it is empty or is an earlier output of the same kind (it holds the kind's
marker file), never anything else a user keeps there.
"""

import shutil
import tempfile
from pathlib import Path

__all__ = ["check_replaceable", "replace_folder"]


def check_replaceable(out_dir, marker, kind):
    """ValueError unless ``out_dir`` is missing, empty, or holds ``marker`` (an earlier
    hwnn ``kind`` folder)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or (any(out_dir.iterdir())
                                                      and not (out_dir / marker).is_file())):
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
        fill(staging)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        staging.rename(out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir
