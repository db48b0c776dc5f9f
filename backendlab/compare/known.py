"""Known differences between backends, as data (``known_differences.json``), matched against a located divergence.

When compare locates where a backend's step parts from the reference's (:mod:`backendlab.compare.locate`),
:func:`match` looks the place up in the catalog: the pair of backends (exactly one of them must compute
the entry's way), the phase, the layer's class and config, and the model's saved config
(``model.keras``'s ``config.json``, read as JSON: no framework). A match's id goes to
``divergence.known`` in report.json; the terminal and report.md give its explanation and workaround.

A new entry is one item of the JSON file, with a model that triggers it in ``tests/fixtures/known_models.py``
and its line in ``tests/cross/test_known.py``.
"""

from __future__ import annotations

import functools
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

CATALOG = Path(__file__).with_name("known_differences.json")
#: Where a divergence is placed that compare does not take apart: training under --devices or --processes N
#: (a probe runs one device's step). Entries with this phase are matched by the model alone.
DATA_PARALLEL = "data-parallel"


@dataclass(frozen=True)
class Known:
    """One known difference: where it shows (the detector) and why."""

    id: str
    backends: tuple[str, ...]
    phases: tuple[str, ...]
    explanation: str
    workaround: str | None = None
    layer_classes: tuple[str, ...] = ()  # the located layer's class is one of these (none: any)
    layer_config: dict = field(default_factory=dict)  # key -> values; the located layer's config has one of them
    model_layers: tuple[str, ...] = ()  # the model holds a layer of one of these classes (none: any)
    model_text: tuple[str, ...] = ()  # regular expressions that must all occur in the model's config

    def matches(self, divergence: dict, backend: str, reference: str, model: dict | None) -> bool:
        if (backend in self.backends) == (reference in self.backends):
            return False  # both or neither compute it this way: this is not what parts them
        where = DATA_PARALLEL if divergence.get("during") == DATA_PARALLEL else divergence.get("phase")
        if where not in self.phases:
            return False
        if self.layer_classes and divergence.get("layer_class") not in self.layer_classes:
            return False
        if not (self.layer_config or self.model_layers or self.model_text):
            return True
        if model is None:
            return False  # the detector needs the model's config, and it could not be read
        if self.layer_config:
            config = layers(model).get(divergence.get("layer") or "", {}).get("config", {})
            if not any(_value_name(config.get(k)) in values for k, values in self.layer_config.items()):
                return False
        if self.model_layers and not {c["class_name"] for c in layers(model).values()} & set(self.model_layers):
            return False
        text = json.dumps(model)
        return all(re.search(pattern, text) for pattern in self.model_text)

    def describe(self) -> str:
        """``known difference <id>: <explanation> Workaround: ...``"""
        workaround = f" Workaround: {self.workaround}" if self.workaround else ""
        return f"known difference {self.id}: {self.explanation}{workaround}"


def _value_name(value) -> str | None:
    """A config value as the catalog names it: a string itself, a serialized object by its class name."""
    if isinstance(value, dict):
        return value.get("class_name")
    return value if isinstance(value, str) else None


@functools.cache
def catalog(path: Path = CATALOG) -> tuple[Known, ...]:
    entries = json.loads(path.read_text())["differences"]
    return tuple(Known(**{k: tuple(v) if isinstance(v, list) else v for k, v in entry.items()}) for entry in entries)


def by_id(known_id: str | None) -> Known | None:
    return next((k for k in catalog() if k.id == known_id), None)


def model_config(path: Path) -> dict | None:
    """The model's config from a ``.keras`` file (a zip holding ``config.json``); None where it cannot be read."""
    try:
        with zipfile.ZipFile(path) as archive:
            return json.loads(archive.read("config.json"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        return None


def layers(model: dict) -> dict[str, dict]:
    """Every layer in a saved model config, nested models' too: name -> its serialized form (class_name, config)."""
    found: dict[str, dict] = {}

    def walk(node) -> None:
        if isinstance(node, dict):
            config = node.get("config")
            if "class_name" in node and isinstance(config, dict) and isinstance(config.get("name"), str):
                found.setdefault(config["name"], node)
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(model)
    return found


def match(divergence: dict, backend: str, reference: str, model: dict | None) -> str | None:
    """The id of the first catalog entry the located divergence matches, or None."""
    return next((k.id for k in catalog() if k.matches(divergence, backend, reference, model)), None)
