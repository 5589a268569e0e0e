"""Files the package ships beside its code: the zoo's ``hub_configs/`` and the ``MODEL_CARD.md`` template.

Read through :mod:`importlib.resources`, so an installed wheel (which holds them as
``resnet_hub/hub_configs/`` and ``resnet_hub/MODEL_CARD.md``, pyproject's force-include) and a
source checkout (where the developers keep them at the top of the repository) read them the same way.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["package_path"]


def package_path(name: str) -> Path:
    """The file or folder ``name`` shipped with resnet_hub: package data in an installed wheel, else the
    top of the source checkout resnet_hub is imported from."""
    package = resources.files("resnet_hub")
    for candidate in (package.joinpath(name), Path(str(package)).parent / name):
        if candidate.is_file() or candidate.is_dir():
            return Path(str(candidate))
    raise FileNotFoundError(f"{name} is neither package data of resnet_hub ({package}) nor beside it in a source "
                            "checkout; is the package installed whole?")
