"""The ConductorJob scripted class: its engine, its attributes and what happens on each event.

The host calls three methods of the engine: ``declare_attributes`` once when the class is
registered, ``on_action`` when a button is pressed, ``on_attribute_change`` when a value changes.
Each body runs through :func:`guard.run`, so nothing ever escapes into the host.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect_conductor.host_export import guard, host_api
from prefect_conductor.host_export.attributes import (
    ACTIONS,
    CLASS_NAME,
    FIRST_ENTRY,
    FRAMES_INFO,
    FRAMES_INFO_FIELDS,
    IMAGE_CLASSES,
    MENUS,
    SHOWN_WHEN,
    AttributeSpec,
    all_specs,
    shown,
)
from prefect_conductor.host_export.item import frames_info
from prefect_conductor.host_export.preview import preview
from prefect_conductor.host_export.refresh import refresh
from prefect_conductor.host_export.submit import submit

HANDLERS: dict[str, Callable[[host_api.Item], Any]] = {
    "refresh": refresh,
    "preview": preview,
    "submit": submit,
}

_HOST_KINDS = {
    "bool": ("bool", False),
    "long": ("long", False),
    "string": ("string", False),
    "strings": ("string", True),
    "references": ("reference", True),
    "menu": ("long", False),
    "choice": ("long", False),
}


def declare(engine: Any, s_class: host_api.ScriptedClass) -> None:
    """The buttons, then every attribute with its default, flags, entries and hover doc."""
    for name, doc in ACTIONS:
        host_api.declare_action(engine, s_class, name, "actions", doc)
    for spec in all_specs():
        _declare(s_class, spec)


def _declare(s_class: host_api.ScriptedClass, spec: AttributeSpec) -> None:
    kind, is_list = _HOST_KINDS[spec.kind]
    host_api.declare_attribute(
        s_class,
        spec.name,
        kind,
        spec.group,
        is_list=is_list,
        default=spec.default,
        doc=spec.doc,
        hidden=spec.hidden,
        read_only=spec.read_only,
        minimum=spec.minimum,
        presets=spec.entries,
        filters=IMAGE_CLASSES if spec.kind == "references" else (),
    )


def remember_menu_choice(obj: host_api.Item, name: str) -> None:
    """Keep the label of the entry the artist picked (the index alone is not reliable)."""
    label = host_api.menu_choice(obj, name)
    if label is None:
        return
    host_api.set_string(obj, MENUS[name], "" if label == FIRST_ENTRY[name] else label)


def update_visibility(obj: host_api.Item) -> None:
    for name, switch in SHOWN_WHEN.items():
        value: Any = (
            host_api.menu_choice(obj, switch)
            if switch == "approval"
            else host_api.get_bool(obj, switch)
        )
        host_api.set_hidden(obj, name, not shown(name, value))


def attribute_changed(obj: host_api.Item, name: str) -> None:
    if name in MENUS:
        remember_menu_choice(obj, name)
    if name in SHOWN_WHEN.values():
        update_visibility(obj)
    if name in FRAMES_INFO_FIELDS:
        host_api.set_string(obj, FRAMES_INFO, frames_info(obj))


class ConductorJobEngine(host_api.ScriptedClassEngine):
    """What the host calls for ConductorJob items."""

    def __init__(self) -> None:
        super().__init__()

    def declare_attributes(self, s_class: host_api.ScriptedClass) -> None:
        guard.run(None, "declaring attributes", lambda: declare(self, s_class))

    def on_action(self, action: Any, obj: host_api.Item, data: Any = None) -> None:
        name = str(action.get_name())
        handler = HANDLERS.get(name)
        if handler is not None:
            guard.run(obj, name.capitalize(), lambda: handler(obj))

    def on_attribute_change(self, obj: host_api.Item, attr: Any, *_: Any) -> None:
        name = host_api.attribute_name(attr)
        guard.run(obj, f"{name} changed", lambda: attribute_changed(obj, name))


_ENGINE: ConductorJobEngine | None = None


def register() -> bool:
    """Register ConductorJob with the host (once); it then shows under Create and New."""
    global _ENGINE
    if host_api.class_exists(CLASS_NAME):
        return True
    _ENGINE = ConductorJobEngine()
    if not host_api.register_class(CLASS_NAME, _ENGINE):
        host_api.log_error(f"prefect-conductor: the host refused to register {CLASS_NAME}")
        return False
    host_api.log_info(f"prefect-conductor: {CLASS_NAME} registered (Create > {CLASS_NAME})")
    return True
