"""The one module that talks to the host's ``ix`` API; everything else goes through it.

Like Deadline Cloud's Maya ``scene.py``, this is a thin facade: small functions that take and
return plain values (strings, ints, lists, small dataclasses), so the plugin's logic can be read
without knowing the host, and tests replace the host with one stand-in module (``tests/
host_standin/ix.py``). Read together, its functions are the whole list of host calls the
plugin relies on.

Functions here do no policy: which attributes count as dependencies, how menus are rebuilt or
what a path becomes on a render node is decided by the callers.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import ix

from prefect_conductor.conductor_cloud.errors import UserError

Item = Any
"""A host item (``OfObject``); opaque outside this module."""
ScriptedClass = Any
"""What ``declare_attributes`` receives."""

ScriptedClassEngine: type = ix.api.ModuleScriptedClassEngine
"""Base class of the ConductorJob engine (the host calls its three callbacks)."""

FRAME_VARIABLE = re.compile(r"\$(\d*)F(?![A-Za-z_])")
WINDOW_SIZE = (800, 560)


class HostError(UserError):
    """The host refused something the plugin asked (an attribute is missing, a save failed)."""


# ------------------------------------------------------------------------------------ logging


def log_info(text: str) -> None:
    ix.log_info(text)


def log_warning(text: str) -> None:
    ix.log_warning(text)


def log_error(text: str) -> None:
    ix.log_error(text)


# ------------------------------------------------------------------------------------ classes


def class_exists(name: str) -> bool:
    return ix.application.get_factory().get_classes().get(name) is not None


def register_class(name: str, engine: Any) -> bool:
    """Register a scripted class: it then appears under Create and under New in browsers."""
    return bool(ix.api.ModuleScriptedClass.register_scripted_class(ix.application, name, engine))


_TYPES = {
    "bool": "TYPE_BOOL",
    "long": "TYPE_LONG",
    "string": "TYPE_STRING",
    "reference": "TYPE_REFERENCE",
}


def declare_attribute(
    s_class: ScriptedClass,
    name: str,
    kind: str,
    group: str,
    *,
    is_list: bool = False,
    default: Any = None,
    doc: str = "",
    hidden: bool = False,
    read_only: bool = False,
    minimum: int | None = None,
    presets: Sequence[str] = (),
    filters: Sequence[str] = (),
) -> None:
    """Declare one attribute of a scripted class with its default, flags, presets and doc.

    ``kind`` is bool, long, string or reference; a menu is a long with ``presets`` whose values
    are the entry indexes.
    """
    attr_cls = ix.api.OfAttr
    container = attr_cls.CONTAINER_LIST if is_list else attr_cls.CONTAINER_SINGLE
    attr = s_class.add_attribute(
        name, getattr(attr_cls, _TYPES[kind]), container, attr_cls.VISUAL_HINT_DEFAULT, group
    )
    if minimum is not None:
        attr.set_numeric_range_min(minimum)
    for index, label in enumerate(presets):
        attr.add_preset(label, str(index))
    if filters:
        vector = ix.api.CoreStringVector(0)
        for class_name in filters:
            vector.add(class_name)
        attr.set_object_filters(vector)
    if not is_list and default is not None:
        if kind == "bool":
            attr.set_bool(bool(default))
        elif kind == "long":
            attr.set_long(int(default))
        elif kind == "string":
            attr.set_string(str(default))
    elif is_list and kind == "string":
        for value in default or ():
            attr.add_string(str(value))
    attr.set_hidden(hidden)
    attr.set_read_only(read_only)
    if doc:
        s_class.set_attr_doc(name, doc)


def declare_action(
    engine: Any, s_class: ScriptedClass, name: str, group: str, doc: str = ""
) -> None:
    """A button at the top of (or inside a group of) the attribute editor."""
    engine.add_action(s_class, name, group)
    if doc:
        s_class.set_attr_doc(name, doc)


# ------------------------------------------------------------------------------------ attributes


def _attribute(item: Item, name: str) -> Any:
    attr = item.get_attribute(name)
    if attr is None:
        raise HostError(f"{item.get_full_name()} has no attribute {name!r}")
    return attr


def attribute_name(attr: Any) -> str:
    return str(attr.get_name())


def get_bool(item: Item, name: str) -> bool:
    return bool(_attribute(item, name).get_bool())


def get_long(item: Item, name: str) -> int:
    return int(_attribute(item, name).get_long())


def get_string(item: Item, name: str) -> str:
    return str(_attribute(item, name).get_string())


def set_string(item: Item, name: str, value: str) -> None:
    attr = _attribute(item, name)
    if attr.get_string() != value:
        attr.set_string(value)


def get_strings(item: Item, name: str) -> list[str]:
    values = ix.api.CoreStringArray()
    _attribute(item, name).get_values(values)
    return [str(values[i]) for i in range(values.get_count())]


def get_references(item: Item, name: str) -> list[str]:
    """Full names of the items a reference list holds (the array is truthy even when empty)."""
    objects = ix.api.OfObjectArray()
    _attribute(item, name).get_values(objects)
    return [str(objects[i].get_full_name()) for i in range(objects.get_count())]


def set_hidden(item: Item, name: str, hidden: bool) -> None:
    _attribute(item, name).set_hidden(bool(hidden))


def menu_choice(item: Item, name: str) -> str | None:
    """The label of the chosen entry, or None when the stored index matches no entry."""
    attr = _attribute(item, name)
    index = attr.get_applied_preset_index()
    return None if index < 0 else str(attr.get_preset_label(index))


def set_menu(item: Item, name: str, labels: Sequence[str], chosen: int) -> None:
    """Replace a menu's entries on this item only, and choose entry ``chosen``."""
    attr = _attribute(item, name)
    attr.remove_all_presets()
    for index, label in enumerate(labels):
        attr.add_preset(label, str(index))
    attr.set_long(chosen)


# ------------------------------------------------------------------------------------ items


def full_name(item: Item) -> str:
    return str(item.get_full_name())


def items_of_class(class_name: str) -> list[Item]:
    """Every item of a class or a class derived from it (``Layer`` finds ``Layer3d`` too)."""
    found = ix.api.OfObjectArray()
    ix.application.get_factory().get_all_objects(class_name, found)
    return [found[i] for i in range(found.get_count())]


def remove_item(item: Item) -> None:
    ix.application.get_factory().remove_item(item.get_full_name())


@dataclass(frozen=True)
class ImageInfo:
    """What the renderer needs to know about an Image or Layer item."""

    path: str
    render_to_disk: bool
    save_as: str
    first_frame: int
    last_frame: int
    frame_step: int


def image_info(item: Item) -> ImageInfo:
    return ImageInfo(
        path=full_name(item),
        render_to_disk=get_bool(item, "render_to_disk"),
        save_as=get_string(item, "save_as"),
        first_frame=get_long(item, "first_frame"),
        last_frame=get_long(item, "last_frame"),
        frame_step=get_long(item, "frame_step"),
    )


@dataclass(frozen=True)
class FileAttribute:
    """A string attribute of an item with its visual hint, and its values as patterns."""

    item: Item
    name: str
    hint: str
    values: tuple[str, ...]
    expression: bool
    private: bool


def _pattern_value(attr: Any, index: int) -> str:
    """The attribute's value; for an active expression, evaluated with frames kept as patterns.

    ``$F`` becomes ``@`` (unpadded) and ``$4F`` becomes ``####`` before the host evaluates the
    rest (project variables and so on), then the expression is put back as it was.
    """
    if not (attr.is_expression_enabled() and attr.is_expression_activated()):
        return str(attr.get_string(index))
    original = attr.get_expression()

    def hashes(match: re.Match[str]) -> str:
        width = int(match.group(1) or 0)
        return "#" * width if width else "@"

    attr.set_expression(FRAME_VARIABLE.sub(hashes, original))
    try:
        return str(attr.get_string(index))
    finally:
        attr.set_expression(original)


def string_attributes(item: Item) -> Iterator[FileAttribute]:
    """Every string attribute of an item, with its visual hint name and values."""
    attr_cls = ix.api.OfAttr
    for index in range(item.get_attribute_count()):
        attr = item.get_attribute(index)
        if attr.get_type() != attr_cls.TYPE_STRING:
            continue
        count = attr.get_value_count() if attr.get_container() == attr_cls.CONTAINER_LIST else 1
        yield FileAttribute(
            item=item,
            name=str(attr.get_name()),
            hint=str(attr_cls.get_visual_hint_name(attr.get_visual_hint())),
            values=tuple(_pattern_value(attr, i) for i in range(count)),
            expression=bool(attr.is_expression_enabled() and attr.is_expression_activated()),
            private=bool(attr.is_private()),
        )


def rewrite_string_attribute(item: Item, name: str, values: Sequence[str], expression: str) -> None:
    """Set a string attribute's values (and its expression text, when it has an active one)."""
    attr = _attribute(item, name)
    if attr.is_expression_enabled() and attr.is_expression_activated():
        attr.set_expression(expression)
        return
    for index, value in enumerate(values):
        if attr.get_string(index) != value:
            attr.set_string(value, index)


def expression_text(item: Item, name: str) -> str:
    return str(_attribute(item, name).get_expression())


def is_disabled(item: Item) -> bool:
    return bool(item.is_disabled())


def all_items() -> list[Item]:
    """Every item in the scene (every item class derives from ``ProjectItem``)."""
    return items_of_class("ProjectItem")


# ------------------------------------------------------------------------------------ project


def project_filename() -> str:
    """The project's file, or an empty string when it has never been saved."""
    return str(ix.application.get_current_project_filename() or "")


def save_project(path: str) -> None:
    """Save the scene to ``path``; the host then treats ``path`` as the current project."""
    if not ix.application.save_project(path):
        raise HostError(f"the host could not save the project to {path}")


def load_project(path: str) -> None:
    if not ix.application.load_project(path):
        raise HostError(f"the host could not load the project {path}")


def factory_variable(name: str) -> str | None:
    variable = ix.application.get_factory().get_vars().get(name)
    return None if variable is None else str(variable.get_string())


def version_name() -> str:
    """The running host's version as it names itself (``5.0.10``, ``4.0 SP12``)."""
    return str(ix.application.get_version_name())


@dataclass(frozen=True)
class ColourFiles:
    """The colour-management files the session uses (empty strings when unset)."""

    ocio_config: str
    cdl_library: str
    colour_space_mapping: str


def colour_files() -> ColourFiles:
    app = ix.application
    return ColourFiles(
        ocio_config=str(app.get_ocio_config_file()) if app.get_use_ocio_config_file() else "",
        cdl_library=str(app.get_cdl_library_file() or ""),
        colour_space_mapping=str(app.get_color_space_mapping_config_file() or ""),
    )


# ------------------------------------------------------------------------------------ dialogs


def inform(text: str, title: str) -> None:
    """A message box with an OK button."""
    ix.application.message_box(text, title, ix.api.AppDialog.ok(), ix.api.AppDialog.STYLE_OK)


def show_text(title: str, text: str) -> None:
    """A read-only text window, shown until the person closes it (the host keeps running)."""
    width, height = WINDOW_SIZE
    window = ix.api.GuiWindow(ix.application.get_event_window(), 200, 120, width, height, title)
    editor = ix.api.GuiTextEdit(window, 0, 0, width, height)
    widget = ix.api.GuiWidget
    editor.set_constraints(
        widget.CONSTRAINT_LEFT,
        widget.CONSTRAINT_TOP,
        widget.CONSTRAINT_RIGHT,
        widget.CONSTRAINT_BOTTOM,
    )
    editor.set_read_only(True)
    editor.set_text(text)
    window.show_modal()
    while window.is_shown():
        ix.application.check_for_events()
