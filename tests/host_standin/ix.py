"""A stand-in for the Jobs host's scripting module ``ix``, so the plugin is tested without the host.

It imitates the host where the plugin relies on it (the calls host_export/host_api.py makes):
scripted-class registration and the engine's three callbacks; typed attributes with presets and an
applied preset index, hidden and read-only flags, numeric minimums, list containers and reference
lists with object filters; items with full names (``project://scene/beauty``), Image and Layer
items with ``render_to_disk``, ``save_as``, ``first_frame``, ``last_frame``, ``frame_step``; file
attributes with visual hints and string expressions; ``get_item``, ``get_all_objects``; a project
file that ``save_project`` writes and ``load_project`` reads back; factory variables (PDIR, CTEMP);
the three log functions; ``message_box``; a text window.

Where the real host's behaviour is unknown or irrelevant, the choice made is written down here:

* Callbacks run synchronously. An exception escaping a callback crashes the real host; here it is
  recorded in ``application.crashes`` so a test can assert it never happens.
* ``on_attribute_change`` fires whenever a value really changes, through the API or the UI, but
  not while a project is being loaded.
* Presets set on one item's attribute stay with that item and are not saved: after a load every
  item has its class's presets again while the stored index is kept (so a menu rebuilt by the
  plugin may point at another entry, which is why the plugin keeps the chosen label too).
* Expressions are string templates: ``$NAME``/``${NAME}`` are factory variables, ``$F`` and
  ``$4F`` the current frame (unpadded, padded to 4).
* The project file is JSON written with sorted keys, so saving an unchanged scene twice writes the
  same bytes. Colour-management preferences are kept with the project, so a batch process that
  loads it sees what the artist's session saw.
* ``OfObjectArray`` is truthy even when empty, as the host's is; use ``get_count()``.

Test helpers that a person's clicks stand for are prefixed ``ui_`` (``ui_create``, ``ui_set``,
``ui_add``, ``ui_press``); ``reset()`` gives a fresh application.
"""

from __future__ import annotations

import json
import os
import re
import sys
import tempfile
import traceback
import types
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

VERSION_NAME = "5.0.10"
BASE = "ProjectItem"
"""The class every item derives from."""
PROJECT_FORMAT = "ix-standin-project/1"


class HostUsageError(Exception):
    """A test asked the stand-in for something the host's UI would not allow."""


# ----------------------------------------------------------------------------------- containers


class _Array:
    """Base of the host's array types: ``add``, ``get_count``, indexing."""

    def __init__(self, count: int = 0) -> None:
        self._items: list[Any] = []

    def add(self, value: Any) -> None:
        self._items.append(value)

    def get_count(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> Any:
        return self._items[index]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)


class OfObjectArray(_Array):
    """Items; truthy even when empty, like the host's (use ``get_count``)."""

    def __bool__(self) -> bool:
        return True


class CoreStringArray(_Array):
    """Strings."""


class CoreStringVector(_Array):
    """Strings (used for object filters)."""


# ----------------------------------------------------------------------------------- attributes


class OfAttr:
    """Attribute constants, and the static ``get_visual_hint_name``."""

    TYPE_BOOL = 0
    TYPE_LONG = 1
    TYPE_DOUBLE = 2
    TYPE_STRING = 3
    TYPE_REFERENCE = 4
    CONTAINER_SINGLE = 0
    CONTAINER_LIST = 1
    VISUAL_HINT_DEFAULT = 0
    VISUAL_HINT_FILENAME_OPEN = 1
    VISUAL_HINT_FILENAME_SAVE = 2
    VISUAL_HINT_FOLDER = 3
    _HINT_NAMES: ClassVar[dict[int, str]] = {
        0: "VISUAL_HINT_DEFAULT",
        1: "VISUAL_HINT_FILENAME_OPEN",
        2: "VISUAL_HINT_FILENAME_SAVE",
        3: "VISUAL_HINT_FOLDER",
    }

    @staticmethod
    def get_visual_hint_name(hint: int) -> str:
        return OfAttr._HINT_NAMES[hint]


_DEFAULTS: dict[int, Any] = {
    OfAttr.TYPE_BOOL: False,
    OfAttr.TYPE_LONG: 0,
    OfAttr.TYPE_DOUBLE: 0.0,
    OfAttr.TYPE_STRING: "",
}
_PY_TYPES: dict[int, tuple[type, ...]] = {
    OfAttr.TYPE_BOOL: (bool,),
    OfAttr.TYPE_LONG: (int,),
    OfAttr.TYPE_DOUBLE: (int, float),
    OfAttr.TYPE_STRING: (str,),
}
_FRAME_TOKEN = re.compile(r"\$(\d*)F(?![A-Za-z_])")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$([A-Za-z_]\w*)")


class Attribute:
    """One attribute of an item (or a class's template for it)."""

    def __init__(
        self, name: str, kind: int, container: int, hint: int, group: str, owner: Item | None
    ) -> None:
        self._name = name
        self._type = kind
        self._container = container
        self._hint = hint
        self._group = group
        self._owner = owner
        single = [_DEFAULTS.get(kind)]
        self._values: list[Any] = [] if container == OfAttr.CONTAINER_LIST else single
        self._presets: list[tuple[str, str]] = []
        self._hidden = False
        self._read_only = False
        self._private = False
        self._min: float | None = None
        self._filters: list[str] = []
        self._expression = ""
        self._expression_enabled = False
        self._expression_activated = False

    def _copy_for(self, owner: Item) -> Attribute:
        twin = Attribute(self._name, self._type, self._container, self._hint, self._group, owner)
        twin._values = list(self._values)
        twin._presets = list(self._presets)
        twin._hidden, twin._read_only, twin._private = self._hidden, self._read_only, self._private
        twin._min, twin._filters = self._min, list(self._filters)
        return twin

    # identity -----------------------------------------------------------------------------

    def get_name(self) -> str:
        return self._name

    def get_type(self) -> int:
        return self._type

    def get_container(self) -> int:
        return self._container

    def get_visual_hint(self) -> int:
        return self._hint

    def get_group_name(self) -> str:
        return self._group

    def get_parent_object(self) -> Item | None:
        return self._owner

    def is_private(self) -> bool:
        return self._private

    def set_private(self, private: bool) -> None:
        self._private = bool(private)

    # flags ------------------------------------------------------------------------------------

    def set_hidden(self, hidden: bool) -> None:
        self._hidden = bool(hidden)

    def is_hidden(self) -> bool:
        return self._hidden

    def set_read_only(self, read_only: bool) -> None:
        self._read_only = bool(read_only)

    def is_read_only(self) -> bool:
        return self._read_only

    def set_numeric_range_min(self, value: float) -> None:
        self._min = value

    def set_object_filters(self, filters: CoreStringVector) -> None:
        self._filters = [str(name) for name in filters]

    def get_object_filters(self) -> list[str]:
        return list(self._filters)

    # values -----------------------------------------------------------------------------------

    def _check(self, kind: int, value: Any) -> Any:
        if self._type != kind:
            raise TypeError(f"attribute {self._name!r} is not of the type being set")
        if not isinstance(value, _PY_TYPES[kind]) or (
            kind == OfAttr.TYPE_LONG and isinstance(value, bool)
        ):
            raise TypeError(f"attribute {self._name!r}: {value!r} is not a valid value")
        number: Any = value  # isinstance above narrowed ``value`` to object
        if self._min is not None and kind == OfAttr.TYPE_LONG:
            return max(int(number), int(self._min))
        if self._min is not None and kind == OfAttr.TYPE_DOUBLE:
            return max(float(number), float(self._min))
        return value

    def _set(self, kind: int, value: Any, index: int) -> None:
        value = self._check(kind, value)
        if self._container == OfAttr.CONTAINER_LIST and index >= len(self._values):
            raise IndexError(f"attribute {self._name!r} has no value {index}")
        if self._values[index] == value:
            return
        self._values[index] = value
        self._changed()

    def _get(self, kind: int, index: int) -> Any:
        if self._type != kind:
            raise TypeError(f"attribute {self._name!r} is not of the type being read")
        return self._values[index]

    def _changed(self) -> None:
        if self._owner is not None:
            self._owner._attribute_changed(self)

    def get_bool(self, index: int = 0) -> bool:
        return bool(self._get(OfAttr.TYPE_BOOL, index))

    def get_long(self, index: int = 0) -> int:
        return int(self._get(OfAttr.TYPE_LONG, index))

    def get_double(self, index: int = 0) -> float:
        return float(self._get(OfAttr.TYPE_DOUBLE, index))

    def get_string(self, index: int = 0) -> str:
        if self._expression_enabled and self._expression_activated and self._owner is not None:
            return self._owner._application._evaluate(self._expression)
        return str(self._get(OfAttr.TYPE_STRING, index))

    def set_bool(self, value: bool, index: int = 0) -> None:
        self._set(OfAttr.TYPE_BOOL, value, index)

    def set_long(self, value: int, index: int = 0) -> None:
        self._set(OfAttr.TYPE_LONG, value, index)

    def set_double(self, value: float, index: int = 0) -> None:
        self._set(OfAttr.TYPE_DOUBLE, value, index)

    def set_string(self, value: str, index: int = 0) -> None:
        self._set(OfAttr.TYPE_STRING, value, index)

    # list containers --------------------------------------------------------------------------

    def get_value_count(self) -> int:
        return len(self._values)

    def _require_list(self) -> None:
        if self._container != OfAttr.CONTAINER_LIST:
            raise TypeError(f"attribute {self._name!r} is not a list")

    def add_string(self, value: str) -> None:
        self._require_list()
        self._values.append(self._check(OfAttr.TYPE_STRING, value))
        self._changed()

    def add_object(self, item: Item) -> bool:
        """Append a reference; refused (False) when the item's class is not in the filters."""
        self._require_list()
        if self._type != OfAttr.TYPE_REFERENCE:
            raise TypeError(f"attribute {self._name!r} does not hold references")
        if self._filters and not any(item.is_kindof(name) for name in self._filters):
            return False
        self._values.append(item.get_full_name())
        self._changed()
        return True

    def remove_all(self) -> None:
        self._require_list()
        if self._values:
            self._values = []
            self._changed()

    def get_object(self, index: int = 0) -> Item | None:
        if self._type != OfAttr.TYPE_REFERENCE:
            raise TypeError(f"attribute {self._name!r} does not hold references")
        owner = self._owner
        return None if owner is None else owner._application._items.get(self._values[index])

    def get_values(self, array: _Array) -> None:
        """Fill ``array``: items for references (missing ones skipped), else the raw values."""
        if self._type == OfAttr.TYPE_REFERENCE:
            for index in range(len(self._values)):
                item = self.get_object(index)
                if item is not None:
                    array.add(item)
            return
        for index in range(len(self._values)):
            is_text = self._type == OfAttr.TYPE_STRING
            array.add(self.get_string(index) if is_text else self._values[index])

    # presets ----------------------------------------------------------------------------------

    def add_preset(self, label: str, value: str) -> None:
        self._presets.append((str(label), str(value)))

    def remove_preset(self, index: int) -> None:
        del self._presets[index]

    def remove_all_presets(self) -> None:
        self._presets = []

    def get_preset_count(self) -> int:
        return len(self._presets)

    def get_preset_label(self, index: int) -> str:
        return self._presets[index][0]

    def get_preset_value(self, index: int) -> str:
        return self._presets[index][1]

    def get_applied_preset_index(self) -> int:
        current = str(self._values[0]) if self._values else ""
        for index, (_, value) in enumerate(self._presets):
            if value == current:
                return index
        return -1

    def get_applied_preset_label(self) -> str:
        index = self.get_applied_preset_index()
        return "" if index < 0 else self._presets[index][0]

    # expressions ------------------------------------------------------------------------------

    def set_expression(self, text: str) -> None:
        self._expression = text

    def get_expression(self) -> str:
        return self._expression

    def enable_expression(self, enabled: bool) -> None:
        self._expression_enabled = bool(enabled)

    def is_expression_enabled(self) -> bool:
        return self._expression_enabled

    def activate_expression(self, active: bool) -> None:
        self._expression_activated = bool(active)

    def is_expression_activated(self) -> bool:
        return self._expression_activated

    # project file -----------------------------------------------------------------------------

    def _dump(self) -> dict[str, Any]:
        return {
            "values": list(self._values),
            "expression": self._expression,
            "expression_enabled": self._expression_enabled,
            "expression_activated": self._expression_activated,
        }

    def _restore(self, data: dict[str, Any]) -> None:
        self._values = list(data["values"])
        self._expression = data.get("expression", "")
        self._expression_enabled = bool(data.get("expression_enabled"))
        self._expression_activated = bool(data.get("expression_activated"))


# ---------------------------------------------------------------------------------- items, classes


@dataclass
class _Action:
    """What ``on_action`` receives as its first argument."""

    name: str

    def get_name(self) -> str:
        return self.name


@dataclass
class ClassDefinition:
    """A class the factory can create: its lineage (own name first) and attribute templates."""

    name: str
    lineage: tuple[str, ...]
    templates: dict[str, Attribute] = field(default_factory=dict)
    engine: ModuleScriptedClassEngine | None = None
    docs: dict[str, str] = field(default_factory=dict)
    actions: list[tuple[str, str]] = field(default_factory=list)


class ScriptedClass:
    """What ``declare_attributes`` receives: declares attributes, their docs and actions."""

    def __init__(self, definition: ClassDefinition) -> None:
        self._definition = definition

    def get_name(self) -> str:
        return self._definition.name

    def add_attribute(
        self, name: str, kind: int, container: int, hint: int, group: str
    ) -> Attribute:
        if name in self._definition.templates:
            raise ValueError(f"attribute {name!r} is declared twice")
        attribute = Attribute(name, kind, container, hint, group, owner=None)
        self._definition.templates[name] = attribute
        return attribute

    def set_attr_doc(self, name: str, text: str) -> None:
        if name not in self._definition.templates and name not in dict(self._definition.actions):
            raise ValueError(f"no attribute or action {name!r} to document")
        self._definition.docs[name] = text

    def get_attr_doc(self, name: str) -> str:
        return self._definition.docs.get(name, "")

    def get_attribute(self, name: str) -> Attribute | None:
        return self._definition.templates.get(name)


class Item:
    """An item in the scene (``OfObject``): a name in a context, a class, attributes."""

    def __init__(
        self, application: Application, definition: ClassDefinition, context: str, name: str
    ) -> None:
        self._application = application
        self._definition = definition
        self._context = context
        self._name = name
        self._disabled = False
        self._attributes = {
            key: template._copy_for(self) for key, template in definition.templates.items()
        }

    def get_name(self) -> str:
        return self._name

    def get_full_name(self) -> str:
        return f"{self._context}/{self._name}"

    def get_class_name(self) -> str:
        return self._definition.name

    def is_kindof(self, class_name: str) -> bool:
        return class_name in self._definition.lineage

    def is_disabled(self) -> bool:
        return self._disabled

    def set_disabled(self, disabled: bool) -> None:
        self._disabled = bool(disabled)

    def get_attribute(self, key: str | int) -> Attribute | None:
        if isinstance(key, int):
            return list(self._attributes.values())[key]
        return self._attributes.get(key)

    def attribute_exists(self, name: str) -> Attribute | None:
        return self._attributes.get(name)

    def get_attribute_count(self) -> int:
        return len(self._attributes)

    def _attribute_changed(self, attribute: Attribute) -> None:
        engine = self._definition.engine
        if engine is None or self._application._loading:
            return
        self._application._callback(
            f"on_attribute_change({attribute.get_name()})",
            engine.on_attribute_change,
            self,
            attribute,
            0,
            0,
        )


def _image_templates() -> dict[str, Attribute]:
    def make(name: str, kind: int, hint: int = OfAttr.VISUAL_HINT_DEFAULT) -> Attribute:
        return Attribute(name, kind, OfAttr.CONTAINER_SINGLE, hint, "output", owner=None)

    templates = {
        "render_to_disk": make("render_to_disk", OfAttr.TYPE_BOOL),
        "save_as": make("save_as", OfAttr.TYPE_STRING, OfAttr.VISUAL_HINT_FILENAME_SAVE),
        "first_frame": make("first_frame", OfAttr.TYPE_LONG),
        "last_frame": make("last_frame", OfAttr.TYPE_LONG),
        "frame_step": make("frame_step", OfAttr.TYPE_LONG),
    }
    templates["first_frame"].set_long(1)
    templates["last_frame"].set_long(50)
    templates["frame_step"].set_long(1)
    templates["frame_step"].set_numeric_range_min(1)
    return templates


def _file_templates(*names: tuple[str, int]) -> dict[str, Attribute]:
    templates = {}
    for name, hint in names:
        templates[name] = Attribute(
            name, OfAttr.TYPE_STRING, OfAttr.CONTAINER_SINGLE, hint, "file", owner=None
        )
    return templates


def _builtin_classes() -> dict[str, ClassDefinition]:
    """The host classes the tests use: images and layers, and a few items that read files."""
    texture = _file_templates(
        ("filename", OfAttr.VISUAL_HINT_FILENAME_OPEN),
        ("filename_sys", OfAttr.VISUAL_HINT_FILENAME_OPEN),
    )
    texture["filename_sys"].set_private(True)
    return {
        "Image": ClassDefinition("Image", ("Image", BASE), _image_templates()),
        "Layer3d": ClassDefinition("Layer3d", ("Layer3d", "Layer", BASE), _image_templates()),
        "TextureMapFile": ClassDefinition(
            "TextureMapFile", ("TextureMapFile", "Texture", BASE), texture
        ),
        "GeometryBundleAlembic": ClassDefinition(
            "GeometryBundleAlembic",
            ("GeometryBundleAlembic", "Geometry", BASE),
            _file_templates(("filename", OfAttr.VISUAL_HINT_FILENAME_OPEN)),
        ),
        "ShaderLibrary": ClassDefinition(
            "ShaderLibrary",
            ("ShaderLibrary", BASE),
            _file_templates(("search_path", OfAttr.VISUAL_HINT_FOLDER)),
        ),
    }


# ---------------------------------------------------------------------------------- factory, vars


class _Var:
    def __init__(self, value: str) -> None:
        self._value = value

    def get_string(self) -> str:
        return self._value


class _Vars:
    def __init__(self, application: Application) -> None:
        self._application = application

    def get(self, name: str) -> _Var | None:
        value = self._application._variables().get(name)
        return None if value is None else _Var(value)


class _Classes:
    def __init__(self, application: Application) -> None:
        self._application = application

    def get(self, name: str) -> ClassDefinition | None:
        return self._application._classes.get(name)

    def exists(self, name: str) -> bool:
        return name in self._application._classes


class _Factory:
    def __init__(self, application: Application) -> None:
        self._application = application

    def get_vars(self) -> _Vars:
        return _Vars(self._application)

    def get_classes(self) -> _Classes:
        return _Classes(self._application)

    def get_all_objects(self, class_name: str, array: OfObjectArray) -> None:
        for item in self._application._items.values():
            if item.is_kindof(class_name):
                array.add(item)

    def get_objects(self, class_name: str, array: OfObjectArray) -> None:
        self.get_all_objects(class_name, array)

    def get_item(self, full_name: str) -> Item | None:
        return self._application._items.get(full_name)

    def remove_item(self, full_name: str) -> None:
        self._application._items.pop(full_name, None)


# ---------------------------------------------------------------------------------- dialogs, gui


class _DialogResult:
    def __init__(self, ok: bool) -> None:
        self._ok = ok

    def is_ok(self) -> bool:
        return self._ok

    def is_yes(self) -> bool:
        return self._ok

    def is_cancelled(self) -> bool:
        return not self._ok

    def is_no(self) -> bool:
        return not self._ok


class AppDialog:
    STYLE_OK = 0
    STYLE_OK_CANCEL = 1
    STYLE_YES_NO = 2

    @staticmethod
    def ok() -> str:
        return "ok"

    @staticmethod
    def cancel() -> str:
        return "cancel"

    @staticmethod
    def yes() -> str:
        return "yes"

    @staticmethod
    def no() -> str:
        return "no"


@dataclass
class MessageBox:
    """A message box the plugin showed, and what the test answered."""

    text: str
    title: str
    style: int
    answered_ok: bool


class GuiWidget:
    CONSTRAINT_LEFT = 0
    CONSTRAINT_TOP = 1
    CONSTRAINT_RIGHT = 2
    CONSTRAINT_BOTTOM = 3

    def __init__(self, parent: Any, x: int, y: int, width: int, height: int) -> None:
        self._parent = parent
        self._children: list[GuiWidget] = []
        if isinstance(parent, GuiWidget):
            parent._children.append(self)

    def set_constraints(self, *constraints: int) -> None:
        self._constraints = constraints


class GuiWindow(GuiWidget):
    """A top-level window; ``show_modal`` plus ``check_for_events`` is how the plugin waits."""

    def __init__(
        self, parent: Any, x: int, y: int, width: int, height: int, title: str = ""
    ) -> None:
        super().__init__(parent, x, y, width, height)
        self._title = title
        self._shown = False
        application._windows.append(self)

    def set_title(self, title: str) -> None:
        self._title = title

    def get_title(self) -> str:
        return self._title

    def show(self) -> None:
        self._shown = True

    def show_modal(self) -> None:
        self._shown = True

    def hide(self) -> None:
        self._shown = False

    def is_shown(self) -> bool:
        return self._shown

    def text(self) -> str:
        """Test helper: the text of the window's text widgets."""
        return "\n".join(c.get_text() for c in self._children if isinstance(c, GuiTextEdit))


class GuiTextEdit(GuiWidget):
    def __init__(self, parent: Any, x: int, y: int, width: int, height: int) -> None:
        super().__init__(parent, x, y, width, height)
        self._text = ""
        self._read_only = False

    def set_text(self, text: str) -> None:
        self._text = text

    def get_text(self) -> str:
        return self._text

    def set_read_only(self, read_only: bool) -> None:
        self._read_only = read_only


class _EventWindow:
    def get_title(self) -> str:
        return "Jobs"

    def set_title(self, title: str) -> None:
        return None


# ---------------------------------------------------------------------------------- application


@dataclass
class Crash:
    """An exception that escaped a plugin callback (the real host would have crashed)."""

    where: str
    error: str
    traceback: str


class Application:
    """``ix.application``: the factory, the project, logging, dialogs; plus test helpers."""

    def __init__(self) -> None:
        self._classes: dict[str, ClassDefinition] = _builtin_classes()
        self._items: dict[str, Item] = {}
        self._project = ""
        self._loading = False
        self._frame = 1
        self._version_name = VERSION_NAME
        self._ctemp = tempfile.gettempdir()
        self._colour: dict[str, Any] = {
            "use_ocio": False,
            "ocio_config": "",
            "cdl_library": "",
            "color_space_mapping": "",
        }
        self.log: list[tuple[str, str]] = []
        self.crashes: list[Crash] = []
        self.messages: list[MessageBox] = []
        self._answers: deque[bool] = deque()
        self._windows: list[GuiWindow] = []
        self.disabled = False

    # project and variables --------------------------------------------------------------------

    def get_current_project_filename(self) -> str:
        return self._project

    def set_current_project_filename(self, path: str) -> None:
        self._project = path

    def _variables(self) -> dict[str, str]:
        folder = os.path.dirname(self._project) if self._project else os.getcwd()
        return {"PDIR": folder, "CTEMP": self._ctemp}

    def _evaluate(self, expression: str) -> str:
        def frame(match: re.Match[str]) -> str:
            width = int(match.group(1) or 0)
            return str(self._frame).zfill(width)

        text = _FRAME_TOKEN.sub(frame, expression)
        variables = self._variables()

        def variable(match: re.Match[str]) -> str:
            name = match.group(1) or match.group(2)
            return variables.get(name, match.group(0))

        return _VARIABLE.sub(variable, text)

    def save_project(self, path: str, *_: Any) -> bool:
        document = {
            "format": PROJECT_FORMAT,
            "items": [
                {
                    "context": item._context,
                    "name": item._name,
                    "class": item.get_class_name(),
                    "disabled": item._disabled,
                    "attributes": {k: a._dump() for k, a in item._attributes.items()},
                }
                for item in self._items.values()
            ],
            "colour": self._colour,
        }
        try:
            with open(path, "w", encoding="utf-8") as stream:
                json.dump(document, stream, indent=1, sort_keys=True)
        except OSError as error:
            log_error(f"cannot save project {path}: {error.strerror}")
            return False
        self._project = path
        return True

    def load_project(self, path: str) -> bool:
        try:
            with open(path, encoding="utf-8") as stream:
                document = json.load(stream)
        except (OSError, ValueError) as error:
            log_error(f"cannot load project {path}: {error}")
            return False
        if not isinstance(document, dict) or document.get("format") != PROJECT_FORMAT:
            log_error(f"cannot load project {path}: not a project file")
            return False
        self._items = {}
        self._loading = True
        try:
            for record in document["items"]:
                definition = self._classes.get(record["class"])
                if definition is None:
                    log_warning(
                        f"unknown class {record['class']}: item {record['name']} was not loaded"
                    )
                    continue
                item = Item(self, definition, record["context"], record["name"])
                item._disabled = bool(record.get("disabled"))
                for key, data in record["attributes"].items():
                    attribute = item._attributes.get(key)
                    if attribute is not None:
                        attribute._restore(data)
                self._items[item.get_full_name()] = item
        finally:
            self._loading = False
        self._colour = dict(document.get("colour") or self._colour)
        self._project = path
        return True

    def get_version_name(self) -> str:
        return self._version_name

    def get_factory(self) -> _Factory:
        return _Factory(self)

    # colour management ------------------------------------------------------------------------

    def get_use_ocio_config_file(self) -> bool:
        return bool(self._colour["use_ocio"])

    def get_ocio_config_file(self) -> str:
        return str(self._colour["ocio_config"])

    def get_cdl_library_file(self) -> str:
        return str(self._colour["cdl_library"])

    def get_color_space_mapping_config_file(self) -> str:
        return str(self._colour["color_space_mapping"])

    # dialogs and windows ----------------------------------------------------------------------

    def message_box(self, text: str, title: str, default: Any, style: int) -> _DialogResult:
        ok = self._answers.popleft() if self._answers else True
        self.messages.append(MessageBox(text, title, style, ok))
        return _DialogResult(ok)

    def get_event_window(self) -> _EventWindow:
        return _EventWindow()

    def check_for_events(self) -> None:
        """The person reads the open windows and closes them."""
        for window in self._windows:
            window.hide()

    def disable(self) -> None:
        self.disabled = True

    def enable(self) -> None:
        self.disabled = False

    # callbacks --------------------------------------------------------------------------------

    def _callback(self, where: str, function: Callable[..., Any], *args: Any) -> Any:
        try:
            return function(*args)
        except Exception as error:  # the real host would crash here
            self.crashes.append(
                Crash(where, f"{type(error).__name__}: {error}", traceback.format_exc())
            )
            return None

    # test helpers: what a person does in the UI -------------------------------------------------

    def ui_create(self, class_name: str, name: str, context: str = "project://scene") -> Item:
        """Create > class (or New > class in a browser): a new item with its class's defaults."""
        created = cmds.CreateObject(name, class_name, "Global", context)
        if created is None:
            raise HostUsageError(f"cannot create {class_name} {name}")
        return created

    def ui_set(self, item: Item | str, name: str, value: Any) -> None:
        """Type or pick a value in the attribute editor."""
        attribute = self._ui_attribute(item, name)
        setters: dict[int, Callable[[Any], None]] = {
            OfAttr.TYPE_BOOL: attribute.set_bool,
            OfAttr.TYPE_LONG: attribute.set_long,
            OfAttr.TYPE_DOUBLE: attribute.set_double,
            OfAttr.TYPE_STRING: attribute.set_string,
        }
        if attribute.get_container() == OfAttr.CONTAINER_LIST:
            attribute.remove_all()
            for entry in value:
                attribute.add_string(entry)
            return
        setters[attribute.get_type()](value)

    def ui_choose(self, item: Item | str, name: str, label: str) -> None:
        """Pick an entry of a menu by its label."""
        attribute = self._ui_attribute(item, name)
        labels = [attribute.get_preset_label(i) for i in range(attribute.get_preset_count())]
        if label not in labels:
            raise HostUsageError(f"menu {name!r} has no entry {label!r}: {labels}")
        attribute.set_long(int(attribute.get_preset_value(labels.index(label))))

    def ui_add(self, item: Item | str, name: str, *targets: Item | str) -> None:
        """The Add button of a reference list: the picker offers only filtered classes."""
        attribute = self._ui_attribute(item, name)
        for target in targets:
            picked = self._resolve(target)
            if not attribute.add_object(picked):
                raise HostUsageError(f"{picked.get_full_name()} is not offered by {name!r}")

    def ui_press(self, item: Item | str, action: str) -> None:
        """Press a button at the top of the attribute editor."""
        target = self._resolve(item)
        definition = target._definition
        if action not in dict(definition.actions) or definition.engine is None:
            raise HostUsageError(f"{target.get_class_name()} has no action {action!r}")
        engine = definition.engine
        self._callback(f"on_action({action})", engine.on_action, _Action(action), target, None)

    def answer_next(self, ok: bool) -> None:
        """How the person will answer the next message box."""
        self._answers.append(ok)

    def set_colour_management(
        self, *, ocio_config: str = "", cdl_library: str = "", mapping: str = ""
    ) -> None:
        """Preferences > Color Management."""
        self._colour = {
            "use_ocio": bool(ocio_config),
            "ocio_config": ocio_config,
            "cdl_library": cdl_library,
            "color_space_mapping": mapping,
        }

    def set_version_name(self, name: str) -> None:
        self._version_name = name

    def set_ctemp(self, folder: str) -> None:
        self._ctemp = folder

    def lines(self, level: str | None = None) -> list[str]:
        """What the log shows, optionally one level (info, warning, error)."""
        return [text for lvl, text in self.log if level is None or lvl == level]

    def item(self, full_name: str) -> Item:
        """The item with this full name (a test mistake when there is none)."""
        return self._resolve(full_name)

    @property
    def windows(self) -> list[GuiWindow]:
        return list(self._windows)

    def _resolve(self, item: Item | str) -> Item:
        if isinstance(item, Item):
            return item
        found = self._items.get(item)
        if found is None:
            raise HostUsageError(f"no item {item}")
        return found

    def _ui_attribute(self, item: Item | str, name: str) -> Attribute:
        attribute = self._resolve(item).get_attribute(name)
        if attribute is None:
            raise HostUsageError(f"no attribute {name!r}")
        if attribute.is_read_only() or attribute.is_hidden():
            raise HostUsageError(f"attribute {name!r} cannot be edited in the UI")
        return attribute


# ------------------------------------------------------------------------------ scripted classes


class ModuleScriptedClassEngine:
    """Base class of a scripted class's engine."""

    def __init__(self) -> None:
        self._s_class: ScriptedClass | None = None

    def add_action(self, s_class: ScriptedClass, name: str, group: str) -> None:
        s_class._definition.actions.append((name, group))

    def declare_attributes(self, s_class: ScriptedClass) -> None:
        return None

    def on_action(self, action: _Action, obj: Item, data: Any) -> None:
        return None

    def on_attribute_change(self, obj: Item, attr: Attribute, *_: Any) -> None:
        return None


class ModuleScriptedClass:
    @staticmethod
    def register_scripted_class(
        app: Application, name: str, engine: ModuleScriptedClassEngine, *_: Any
    ) -> bool:
        if name in app._classes:
            log_error(f"class {name} already exists")
            return False
        definition = ClassDefinition(name, (name, "ScriptedClass", BASE), engine=engine)
        scripted = ScriptedClass(definition)
        app._callback("declare_attributes", engine.declare_attributes, scripted)
        app._classes[name] = definition
        return True


# ---------------------------------------------------------------------------------- commands


def _create_object(name: str, class_name: str, _kind: str, context: str) -> Item | None:
    definition = application._classes.get(class_name)
    if definition is None:
        log_error(f"unknown class {class_name}")
        return None
    base, number = name, 1
    while f"{context}/{name}" in application._items:
        number += 1
        name = f"{base}{number}"
    item = Item(application, definition, context, name)
    application._items[item.get_full_name()] = item
    return item


cmds = types.SimpleNamespace(CreateObject=_create_object)

# ---------------------------------------------------------------------------------- module level

application = Application()


def reset() -> Application:
    """A fresh application (new scene, empty log) in place, so references to ix stay valid."""
    application.__init__()  # type: ignore[misc]
    return application


def get_item(full_name: str) -> Item | None:
    return application._items.get(full_name)


def _log(level: str, text: str) -> None:
    application.log.append((level, str(text)))
    if os.environ.get("IX_STANDIN_ECHO"):
        print(f"[{level}] {text}", file=sys.stderr)


def log_info(text: str) -> None:
    _log("info", text)


def log_warning(text: str) -> None:
    _log("warning", text)


def log_error(text: str) -> None:
    _log("error", text)


api = types.ModuleType("ix.api")
api.__dict__.update(
    OfAttr=OfAttr,
    OfObjectArray=OfObjectArray,
    CoreStringArray=CoreStringArray,
    CoreStringVector=CoreStringVector,
    ModuleScriptedClass=ModuleScriptedClass,
    ModuleScriptedClassEngine=ModuleScriptedClassEngine,
    AppDialog=AppDialog,
    GuiWidget=GuiWidget,
    GuiWindow=GuiWindow,
    GuiTextEdit=GuiTextEdit,
)
sys.modules.setdefault("ix.api", api)
