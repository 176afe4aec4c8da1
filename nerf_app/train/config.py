"""Typed run configurations: dataclasses per mode, YAML presets, ``--set key=value`` overrides.

Every mode's config is a dataclass deriving from :class:`BaseConfig` (which holds what the generic
trainer needs: mode, input, seed, device and the ``train`` budget section). Sections are nested
dataclasses, so a dotted key ``train.max_steps`` or ``model.log2_hashmap_size`` names one field.

Resolution order (later wins): dataclass defaults -> ``configs/<mode>.yaml`` preset (if present)
-> ``--config FILE`` -> ``--set`` overrides -> explicit CLI flags (``--max-steps`` ...).
Values are checked against the field's type; an unknown key or a value of the wrong type raises
:class:`~nerf_app.errors.ConfigError` naming the key (and the file, when it came from one).
"""
from __future__ import annotations

import dataclasses
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Optional, Type, TypeVar

import yaml

from ..errors import ConfigError
from ..results import write_text

# The YAML presets: ``configs/`` at the repository root in a checkout (and an editable install); a
# regular install carries the same files as package data in ``nerf_app/presets`` (setup.py maps
# configs/ there), so the trainer never falls back to bare dataclass defaults by accident.
_PACKAGE_PRESETS = Path(__file__).resolve().parents[1] / "presets"
_CHECKOUT_PRESETS = Path(__file__).resolve().parents[2] / "configs"


def preset_dir() -> Path:
    """The folder holding ``<mode>.yaml`` presets; :class:`ConfigError` if the install lacks it."""
    for folder in (_PACKAGE_PRESETS, _CHECKOUT_PRESETS):
        if (folder / "nerf.yaml").is_file():
            return folder
    raise ConfigError(f"the config presets are missing (looked in {_PACKAGE_PRESETS} and {_CHECKOUT_PRESETS}): "
                      "reinstall nerf_app (pip install --no-build-isolation .)")


def preset_path(name: str) -> Path:
    """``configs/<name>.yaml`` wherever the presets are installed."""
    return preset_dir() / f"{name}.yaml"


def preset_names() -> list:
    """The presets' names (``nerf_real``, ``sdf``, ...), for ``--config NAME`` and its error message."""
    return sorted(p.stem for p in preset_dir().glob("*.yaml"))


def resolve_config(name_or_path: str) -> Path:
    """``--config``'s value: a YAML file, or a preset's name (``--config nerf_real``), which works from an
    installed package where no ``configs/`` folder is at hand. A file of that name wins over a preset."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    stem = path.name[:-5] if path.name.endswith(".yaml") else path.name
    if path.parent == Path(".") and stem and (preset_dir() / f"{stem}.yaml").is_file():
        return preset_dir() / f"{stem}.yaml"
    raise ConfigError(f"--config {name_or_path}: no such file, and not a preset name "
                      f"(presets: {', '.join(preset_names())})")

C = TypeVar("C", bound="BaseConfig")


@dataclass
class TrainSettings:
    """Budgets and bookkeeping of the generic loop (:mod:`nerf_app.train.trainer`)."""
    max_steps: int = 10000          # stop after this many optimiser steps (0 = no step limit)
    max_time: float = 0.0           # stop after this many seconds of training (0 = no time limit)
    log_every: int = 50             # one log.jsonl line every N steps (and at the last step)
    checkpoint_every: int = 1000    # save checkpoints/last.pt every N steps (0 = by time only)
    checkpoint_every_s: float = 60.0  # ... and every S seconds of training (0 = by steps only); the first
                                      # one comes after half of this, so a crash in the first minute keeps work
    nan_patience: int = 5           # stop after this many consecutive non-finite steps
    progress: bool = True           # tqdm progress bar


@dataclass
class BaseConfig:
    """Fields every mode has. Subclasses add their own sections (``model``, ``data``, ...)."""
    mode: str = ""
    input: str = ""                 # the training input (mesh file, scene folder ...)
    seed: int = 0
    device: str = "cpu"
    backend: str = "auto"           # kernels for encodings/MLPs: auto | torch | cpp | cuda
    threads: int = 0                # torch.set_num_threads (0 = leave torch's default)
    train: TrainSettings = field(default_factory=TrainSettings)


# ----------------------------------------------------------------------------------------------
# dict <-> dataclass


def to_dict(cfg) -> Dict[str, Any]:
    """The config as plain nested dicts/lists (YAML- and ``weights_only``-safe)."""
    def plain(v):
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(dataclasses.asdict(cfg))


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp, key: str, source: str) -> Any:
    """Check/convert ``value`` to the annotated type ``tp`` (int, float, bool, str, Optional, list, tuple)."""
    origin = typing.get_origin(tp) or (tp if tp in (list, tuple) else None)
    where = f" (in {source})" if source else ""
    if origin is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            return None
        return _coerce(value, args[0], key, source)
    if origin in (list, tuple):
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key {key!r}{where}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, key, source) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "yes", "on", "1", "false", "no", "off", "0"):
            return value.lower() in ("true", "yes", "on", "1")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"config key {key!r}{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r}{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                try:
                    f = float(value)
                    if f.is_integer():
                        return int(f)
                except ValueError:
                    pass
        raise ConfigError(f"config key {key!r}{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"config key {key!r}{where}: expected a number, got {value!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key {key!r}{where}: expected a number, got {value!r}") from None
        except OverflowError:  # an integer beyond the float range (YAML `1` followed by 400 zeros)
            shown = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
            raise ConfigError(f"config key {key!r}{where}: expected a finite number, got {shown}") from None
        if not math.isfinite(number):  # nan never compares, so `max_time: nan` would never stop
            raise ConfigError(f"config key {key!r}{where}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"config key {key!r}{where}: expected a string, got {value!r}")
        return str(value)
    raise ConfigError(f"config key {key!r}{where}: unsupported field type {_type_name(tp)}")


def _hints(cls) -> Dict[str, Any]:
    return typing.get_type_hints(cls)


def update_from_dict(cfg, data: Dict[str, Any], source: str = "", prefix: str = "") -> None:
    """Set fields of ``cfg`` (in place) from a nested dict; unknown keys raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"config{' ' + source if source else ''}: section {prefix or '<top>'!r} must be a mapping")
    hints = _hints(type(cfg))
    names = {f.name for f in dataclasses.fields(cfg)}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {full!r}{' in ' + source if source else ''}; "
                              f"known keys here: {', '.join(sorted(names))}")
        current = getattr(cfg, key)
        if dataclasses.is_dataclass(current):
            update_from_dict(current, value, source, prefix=f"{full}.")
        else:
            setattr(cfg, key, _coerce(value, hints[key], full, source))


def set_dotted(cfg, key: str, raw: Any, source: str = "--set") -> None:
    """``set_dotted(cfg, "train.max_steps", "200")``: parse ``raw`` (YAML scalar) into the field's type."""
    parts = key.split(".")
    target = cfg
    for i, part in enumerate(parts):
        names = {f.name for f in dataclasses.fields(target)}
        if part not in names:
            prefix = ".".join(parts[:i])
            raise ConfigError(f"unknown config key {key!r} ({source}); known keys"
                              f"{' under ' + prefix if prefix else ''}: {', '.join(sorted(names))}")
        if i == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(target, part)):
                raise ConfigError(f"config key {key!r} ({source}) is a section; set one of its fields")
            value = raw
            if isinstance(raw, str):
                try:  # YAML gives numbers/bools/lists; a plain word stays a string
                    value = yaml.safe_load(raw) if raw.strip() else raw
                except yaml.YAMLError:
                    value = raw
                if _hints(type(target))[part] is str:
                    value = raw
            setattr(target, part, _coerce(value, _hints(type(target))[part], key, source))
        else:
            target = getattr(target, part)
            if not dataclasses.is_dataclass(target):
                raise ConfigError(f"config key {key!r} ({source}): {part!r} is not a section")


def apply_overrides(cfg, overrides: Iterable[str]) -> None:
    """Apply ``["a.b=1", "c=x"]`` in order."""
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        set_dotted(cfg, key.strip(), raw.strip())


def read_yaml(path) -> Dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        with open(path, "r", encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    except RecursionError:  # the YAML parser recurses once per nesting level
        raise ConfigError(f"{path}: not a config (nested too deeply)") from None
    except (UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of config keys")
    return data


def from_dict(cls: Type[C], data: Dict[str, Any], source: str = "") -> C:
    cfg = cls()
    update_from_dict(cfg, data, source)
    return cfg


def load_config(cls: Type[C], mode: str, config_file: Optional[str] = None, overrides: Iterable[str] = (),
                use_preset: bool = True) -> C:
    """Defaults -> ``configs/<mode>.yaml`` -> ``config_file`` -> ``overrides``; sets ``cfg.mode``."""
    cfg = cls()
    preset = preset_path(mode) if use_preset else None
    if preset is not None and preset.is_file():
        update_from_dict(cfg, read_yaml(preset), str(preset))
    if config_file:
        config_file = str(resolve_config(config_file))
        data = read_yaml(config_file)
        if data.get("mode", mode) not in ("", mode):
            raise ConfigError(f"{config_file}: config is for mode {data['mode']!r}, not {mode!r}")
        update_from_dict(cfg, data, str(config_file))
    apply_overrides(cfg, overrides)
    cfg.mode = mode
    check_values(cfg)
    return cfg


# Range rules by field name, checked on every loaded config (presets, --config files, --set, a run's
# config.yaml): a bad value fails here, before anything is built or written, naming the key.
_AT_LEAST = {"max_steps": 0, "max_time": 0, "checkpoint_every": 0, "checkpoint_every_s": 0, "log_every": 1,
             "nan_patience": 1, "threads": 0, "seed": 0, "batch_size": 1, "resolution": 1, "finest_resolution": 0,
             "n_levels": 1, "base_resolution": 1, "width": 1, "near_margin": 0, "free_space_margin": 0,
             "near_percentile": 0}
# Upper bounds keep an absurd value from exhausting memory (the kernel's OOM killer gives no error at all):
# far above any real use, far below what a 24 GiB machine could not allocate.
_AT_MOST = {"resolution": 4096, "log2_hashmap_size": 26, "n_levels": 32, "n_features_per_level": 8,
            "seed": 2 ** 63 - 1, "width": 4096, "n_hidden_layers": 64, "density_width": 4096, "color_width": 4096,
            "density_layers": 64, "color_layers": 64, "geo_features": 1024, "batch_size": 1 << 24,
            "pool_size": 1 << 27, "refresh_size": 1 << 27, "dim": 4096, "base_resolution": 1 << 16,
            "finest_resolution": 1 << 20, "near_percentile": 100}
# learning rates and Adam's eps must be > 0 (the schedules divide by them); ``latent.lr`` 0 means "optim.lr"
_POSITIVE = {"lr", "lr_final", "fit_lr", "eps"}
_ZERO_MEANS_DEFAULT = {"latent.lr"}
_MAX_TABLE_BYTES = 8 << 30


def check_values(cfg, prefix: str = "") -> None:
    """Ranges of well-known keys (see ``_AT_LEAST``/``_AT_MOST``), learning rates >= 0 and the device."""
    for f in dataclasses.fields(cfg):
        value, key = getattr(cfg, f.name), f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            check_values(value, f"{key}.")
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if f.name in _POSITIVE and key not in _ZERO_MEANS_DEFAULT and not value > 0:
            raise ConfigError(f"config key {key!r} must be > 0, got {value!r}")
        low = _AT_LEAST.get(f.name, 0 if "lr" in f.name.split("_") else None)
        if low is not None and value < low:
            raise ConfigError(f"config key {key!r} must be >= {low}, got {value!r}")
        high = _AT_MOST.get(f.name)
        if high is not None and value > high:
            raise ConfigError(f"config key {key!r} must be <= {high}, got {value!r}")
    names = {f.name for f in dataclasses.fields(cfg)}
    if {"n_levels", "log2_hashmap_size", "n_features_per_level"} <= names:  # the hash table's size at most
        table = cfg.n_levels * (1 << cfg.log2_hashmap_size) * cfg.n_features_per_level * 4
        if table > _MAX_TABLE_BYTES:
            raise ConfigError(f"{prefix}n_levels x 2^{prefix}log2_hashmap_size x {prefix}n_features_per_level makes a "
                              f"{table / 2 ** 30:.0f} GiB hash table (at most {_MAX_TABLE_BYTES >> 30} GiB)")
    if not prefix and hasattr(cfg, "device"):
        check_device(cfg.device)


def check_device(device: str) -> None:
    """``cpu``, ``cuda`` or ``cuda:N`` that this machine's torch can use."""
    import torch
    text = str(device).strip().lower()
    if text == "cpu":
        return
    if text == "cuda" or (text.startswith("cuda:") and text[5:].isdigit()):
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r}: this torch has no usable CUDA GPU "
                              f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'}); use device=cpu")
        index = int(text[5:]) if ":" in text else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s)")
        return
    raise ConfigError(f"device must be cpu, cuda or cuda:N, got {device!r}")


def save_config(cfg, path) -> None:
    """Write the resolved config as YAML, atomically (temp file + rename)."""
    path = Path(path)
    write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))
