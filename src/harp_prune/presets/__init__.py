"""Config presets shipped with the package: ``--config NAME`` finds ``NAME.yaml`` beside this file.

A preset is an ordinary YAML config file (the paper's CIFAR-10/SVHN settings, the ``harp compare`` grids);
it ships in the wheel so that ``--config paper-cifar10-vgg16`` works wherever harp-prune is installed.
"""

from __future__ import annotations

from pathlib import Path

from harp_prune.errors import HarpError

PRESET_DIR = Path(__file__).parent
SUFFIX = ".yaml"


def preset_names() -> list[str]:
    """The names of the shipped presets, sorted (``compare-small``, ``paper-cifar10-vgg16``, ...)."""
    return sorted(path.stem for path in PRESET_DIR.glob(f"*{SUFFIX}"))


def resolve_config_file(text: str) -> Path:
    """The config file ``--config text`` means: an existing path first, else a shipped preset by name.

    A name matches with or without ``.yaml`` (``paper-cifar10-vgg16`` or ``paper-cifar10-vgg16.yaml``); a text
    with a directory part is only ever a path, so a mistyped path is reported rather than silently replaced. A
    directory is never a config file: ``--config compare-full`` run beside the run folder ``compare-full`` that
    preset writes still means the preset.
    """
    path = Path(text)
    if path.exists() and not path.is_dir():
        return path
    name = text.removesuffix(SUFFIX)
    if path.name == text and name in preset_names():
        return PRESET_DIR / f"{name}{SUFFIX}"
    problem = (" is a directory, not a config file" if path.is_dir()
               else ": no such file and no shipped preset of that name")
    raise HarpError(f"--config {text}{problem}; give a YAML file's path or one of the presets: "
                    f"{', '.join(preset_names())}")
