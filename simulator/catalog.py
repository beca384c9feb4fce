"""The catalog: models, GPUs, fabrics and clusters shipped as YAML in the `configs` package.

`get_model("llama-3.1-70b")`, `get_gpu("h100-sxm")`, `get_cluster("dgx-h100")`, `get_fabric("ib-ndr-400")`;
`list_names(kind)` for the listings. Any of the getters also accepts a path to a YAML file, and
`get_model` a HuggingFace `config.json`. Workload presets (`configs/workloads`): `preset_names()`,
`check_preset(name)`, `preset_path(name)`.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from simulator.errors import InputError, pydantic_error_to_input_error
from simulator.hardware import GPU, Cluster, Fabric
from simulator.hf_config import load_hf_config
from simulator.model import Model
from simulator.yamlio import read_yaml

KINDS = {
    "model": ("models", Model),
    "gpu": ("hardware", GPU),
    "fabric": ("fabrics", Fabric),
    "cluster": ("clusters", Cluster),
}


def catalog_dir(kind: str) -> Path:
    """Folder of the shipped YAML files of one kind."""
    return Path(str(resources.files("configs").joinpath(KINDS[kind][0])))


@cache
def list_names(kind: str) -> tuple[str, ...]:
    """Catalog names of one kind, sorted."""
    return tuple(sorted(p.stem for p in catalog_dir(kind).glob("*.yaml")))


def parse_entry(kind: str, data: Any, *, file: str | None, field: str | None = None):
    """Validate a dict as one catalog entry of `kind`."""
    cls = KINDS[kind][1]
    if not isinstance(data, dict):
        raise InputError(
            f"expected a mapping for a {kind}, got {type(data).__name__}", file=file, field=field
        )
    try:
        return cls.model_validate(data)
    except ValidationError as exc:
        raise pydantic_error_to_input_error(exc, file=file, prefix=field, model=cls) from None


@cache
def _load_named(kind: str, name: str):
    path = catalog_dir(kind) / f"{name}.yaml"
    return parse_entry(kind, read_yaml(path), file=str(path))


def preset_names() -> tuple[str, ...]:
    """Names of the shipped workload presets."""
    folder = Path(str(resources.files("configs").joinpath("workloads")))
    return tuple(sorted(p.stem for p in folder.glob("*.yaml")))


def preset_path(name: str) -> Path:
    """The YAML file of a shipped workload preset (InputError when there is none of that name)."""
    check_preset(name)
    return Path(str(resources.files("configs").joinpath("workloads", f"{name}.yaml")))


def check_preset(name: str, file: str | None = None, field: str | None = "workload.preset") -> None:
    """Raise InputError (listing the known presets) unless `name` is a shipped preset."""
    if name not in preset_names():
        raise InputError(
            f"unknown workload preset {name!r}; known presets: {', '.join(preset_names())}",
            file=file,
            field=field,
        )


def _looks_like_path(ref: str) -> bool:
    return "/" in ref or ref.endswith((".yaml", ".yml", ".json"))


def get(kind: str, ref: str, *, file: str | None = None, field: str | None = None):
    """A catalog entry by name, or from a file path. Unknown names list the known ones."""
    if not isinstance(ref, str):
        raise InputError(f"expected a {kind} name (string), got {ref!r}", file=file, field=field)
    if _looks_like_path(ref):
        path = Path(ref)
        if file and not path.is_absolute():
            path = Path(file).parent / path
        if not path.is_file():  # named by the file and field that refer to it
            raise InputError(
                f"{kind} file {str(path)!r} not found (or not a file); expected a catalog name or a path to "
                "a YAML file",
                file=file,
                field=field,
            )
        if kind == "model" and path.suffix == ".json":
            return load_hf_config(path)
        return parse_entry(kind, read_yaml(path), file=str(path))
    name = ref.strip().lower()
    if name not in list_names(kind):
        known = ", ".join(list_names(kind))
        raise InputError(
            f"unknown {kind} {ref!r}; expected one of: {known} (or a path to a YAML file)",
            file=file,
            field=field,
        )
    return _load_named(kind, name)


def get_model(ref: str, **where) -> Model:
    return get("model", ref, **where)


def get_gpu(ref: str, **where) -> GPU:
    return get("gpu", ref, **where)


def get_fabric(ref: str | Fabric, **where) -> Fabric:
    return ref if isinstance(ref, Fabric) else get("fabric", ref, **where)


def get_cluster(ref: str, **where) -> Cluster:
    return get("cluster", ref, **where)
