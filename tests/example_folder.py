"""The example image folder and task of ``examples/``, imported by path (examples is no package)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
#: the --task text of the example task
TINY_TASK = f"{EXAMPLES / 'tiny_task.py'}:task"


def make_folder(root: Path, **kwargs) -> Path:
    """Write the example's generated image folder under ``root``; return its labels CSV."""
    spec = importlib.util.spec_from_file_location("make_image_folder", EXAMPLES / "make_image_folder.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.make_folder(root, **kwargs)
