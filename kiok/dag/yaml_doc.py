"""YAML text to a plain document (dicts, lists, scalars), PyYAML's safe subset, fast.

libyaml (when PyYAML has it) parses and composes the node tree in C; PyYAML's own
constructor then turns nodes into Python objects in pure Python, with a generator per
collection and bookkeeping for recursive structures, which was most of registering a
10,000-task DAG. The nodes of a DAG document almost all carry the three plain tags (string,
mapping, sequence), so ``load`` builds those itself and hands every other scalar (ints,
booleans, timestamps, ...) to PyYAML's safe constructor. Anything less plain (merge keys
``<<``, ``!!set``, ``!!omap``, unhashable keys, unknown tags) makes it build the whole
document the standard way instead, so the result and the errors are PyYAML's own.

One difference from PyYAML: a string key given twice in a plain mapping is an error (PyYAML
keeps the last value), so a DAG that sets ``timeout`` twice is refused, not read half-way.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

#: libyaml's safe loader when PyYAML was built with it (ten times faster at parsing), else
#: the pure-Python one.
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"


class _NotPlain(Exception):
    """A node this module leaves to PyYAML's constructor, for the whole document."""


def load(text: str) -> Any:
    """The document in ``text`` (None when empty), as ``yaml.load(text, SAFE_LOADER)`` gives
    it, raising what it raises: ``yaml.YAMLError`` (marked with the place), ``ValueError``
    or ``OverflowError`` for a scalar that cannot be built, ``RecursionError`` past the
    interpreter's depth."""
    loader = SAFE_LOADER(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        try:
            return _Builder(loader).build(root)
        except _NotPlain:
            return loader.construct_document(root)
    finally:
        loader.dispose()


class _Builder:
    """Nodes to objects. An alias is the same node object as its anchor, so each collection
    node is built once (``_built``): shared values stay shared, and a document of aliases
    of aliases costs its nodes, not its expansion."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._built: dict[int, Any] = {}

    def build(self, node: Node) -> Any:
        if isinstance(node, ScalarNode):
            if node.tag == _STR:
                return node.value
            return self._loader.construct_object(node, deep=True)
        done = self._built.get(id(node))
        if done is not None:
            return done
        if isinstance(node, SequenceNode) and node.tag == _SEQ:
            items: list[Any] = []
            self._built[id(node)] = items
            items.extend(self.build(child) for child in node.value)
            return items
        if isinstance(node, MappingNode) and node.tag == _MAP:
            mapping: dict[Any, Any] = {}
            self._built[id(node)] = mapping
            for key_node, value_node in node.value:
                if not isinstance(key_node, ScalarNode):
                    raise _NotPlain  # a collection as a key: PyYAML says it is unhashable
                if key_node.tag == _STR:
                    key = key_node.value
                    if key in mapping:
                        raise yaml.constructor.ConstructorError(
                            None, None, f"found duplicate key {key!r}", key_node.start_mark
                        )
                elif key_node.tag == "tag:yaml.org,2002:merge":
                    raise _NotPlain
                else:
                    key = self._loader.construct_object(key_node, deep=True)
                mapping[key] = self.build(value_node)
            return mapping
        raise _NotPlain
