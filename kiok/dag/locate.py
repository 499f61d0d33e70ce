"""Where in a DAG document a field is: ``tasks[1].requires`` → line 7. A refused
registration then names the line as well as the field, and the admin UI marks it in the
editor. A YAML document's nodes, kept from the parse that built it, say where each part is
(``line_in``); a JSON document is composed once more, with libyaml, as YAML (``line_of``)."""

from __future__ import annotations

import re

import yaml

from kiok.dag import yaml_doc

#: Bounds for composing a document only to locate a line: as many values and levels as a
#: DAG document may have (``kiok.dag.load``), so a located error never costs more than the
#: parse that found it.
_MAX_VALUES = 200_000
_MAX_DEPTH = 64
_STEP = re.compile(r"([^.\[\]]+)|\[([0-9]+)\]")


def path_steps(path: str) -> list[str | int]:
    """``tasks[1].config.url`` → ``["tasks", 1, "config", "url"]``."""
    return [int(index) if index else name for name, index in _STEP.findall(path)]


def line_of(text: str, path: str | None) -> int | None:
    """The 1-based line of ``path`` in the document (the key's line for a mapping entry), or
    of the deepest part of it that exists; None for an unparseable document or no path."""
    if not path:
        return None
    try:
        node = yaml_doc.compose(text, max_values=_MAX_VALUES, max_depth=_MAX_DEPTH)
    except (yaml.YAMLError, yaml_doc.LimitExceeded, RecursionError, ValueError):
        return None
    return line_in(node, path)


def line_in(node: yaml.Node | None, path: str | None) -> int | None:
    """The 1-based line of ``path`` under the root ``node`` (as ``line_of``); no parsing."""
    if node is None or not path:
        return None
    line: int = node.start_mark.line + 1
    for step in path_steps(path):
        if isinstance(node, yaml.MappingNode):
            found = None
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(step):
                    found = (key, value)
                    break
            if found is None:  # an unknown or missing key: the line reached so far
                return line
            line = found[0].start_mark.line + 1
            node = found[1]
        elif isinstance(node, yaml.SequenceNode):
            item = _item(node, step)
            if item is None:
                return line
            node = item
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _item(node: yaml.SequenceNode, step: str | int) -> yaml.Node | None:
    """The ``step``-th item, or (a string step) the mapping item whose ``id`` is ``step``."""
    if isinstance(step, int):
        return node.value[step] if step < len(node.value) else None
    for item in node.value:
        if isinstance(item, yaml.MappingNode):
            for key, value in item.value:
                if getattr(key, "value", None) == "id" and getattr(value, "value", None) == step:
                    return item
    return None
