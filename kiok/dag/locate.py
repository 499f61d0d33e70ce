"""Where in a DAG document a field is: ``tasks[1].requires`` → line 7. A refused
registration then names the line as well as the field, and the admin UI marks it in the
editor. YAML is parsed into nodes (which keep their positions); JSON is YAML for this."""

from __future__ import annotations

import re

import yaml

_STEP = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def path_steps(path: str) -> list[str | int]:
    """``tasks[1].config.url`` → ``["tasks", 1, "config", "url"]``."""
    return [int(index) if index else name for name, index in _STEP.findall(path)]


def line_of(text: str, path: str | None) -> int | None:
    """The 1-based line of ``path`` in the document (the key's line for a mapping entry), or
    of the deepest part of it that exists; None for an unparseable document or no path."""
    if not path:
        return None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError, ValueError):
        return None
    if node is None:
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
