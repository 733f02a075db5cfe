"""A Python path on which `import ray` fails, as on a GPU image without Ray: a stand-in `ray` package that
raises ImportError, put first."""

from __future__ import annotations

import os
from pathlib import Path


def no_ray_pythonpath(tmp_path: Path, *after: str) -> str:
    """PYTHONPATH: a folder under tmp_path holding the failing `ray`, then `after` (empty entries dropped)."""
    package = tmp_path / "no_ray" / "ray"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text("raise ImportError('No module named ray (made unimportable by a test)')\n")
    return os.pathsep.join([str(package.parent), *filter(None, after)])
