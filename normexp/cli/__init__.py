"""The command-line entry points: the only modules that import Hydra.

``normexp-train`` (train.py), ``normexp-table`` (table.py) and ``normexp-reproduce`` (reproduce.py) compose the YAML
under ``conf/`` into plain dataclasses and hand them down; nothing below this package knows Hydra exists.
"""
from __future__ import annotations

from pathlib import Path


def conf_dir() -> str:
    """The config tree: ``normexp/conf`` inside an installed wheel, the repository's top-level ``conf/`` otherwise.

    The repository keeps ``conf/`` at its top (the layout shows the experiment); ``pyproject.toml`` maps it into the
    wheel as the package data ``normexp/conf``, so an installed entry point finds it without the repository.
    """
    package = Path(__file__).resolve().parents[1]
    packaged = package / "conf"
    return str(packaged if (packaged / "config.yaml").is_file() else package.parent / "conf")
