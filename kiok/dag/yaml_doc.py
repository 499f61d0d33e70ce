"""YAML text to a plain document (dicts, lists, scalars), PyYAML's safe subset, fast.

libyaml (when PyYAML has it) parses and composes the node tree in C; PyYAML's own
constructor then turns nodes into Python objects in pure Python, with a generator per
collection and bookkeeping for recursive structures, which was most of registering a
10,000-task DAG. The nodes of a DAG document almost all carry the three plain tags (string,
mapping, sequence), so ``load`` builds those itself and hands every other scalar (ints,
booleans, timestamps, ...) to PyYAML's safe constructor, one node at a time. It builds the
other collections PyYAML's safe loader knows (``!!set``, ``!!omap``, ``!!pairs``) itself too,
so that no part of a document, whatever it holds, is built with PyYAML's rules for keys and
merges; a collection with any other tag goes to PyYAML's constructor, which refuses it
without building what is inside.

Limits are enforced while the document is composed, not after: the composer counts value
nodes and nesting as libyaml's parser produces them and stops at the first one over the
limit (``LimitExceeded``), so an 8 MB ``[1,1,1,...]`` costs its first 200,000 values, not
all four million.

Differences from PyYAML: a key given twice in a mapping (or ``!!set``, or ``!!omap``) is an
error (PyYAML keeps the last value), so a DAG that sets ``timeout`` twice is refused, not read
half-way; keys are compared once resolved, so ``1`` and ``0x1``, or ``true`` and ``yes``, are
the same key given twice; a second merge key ``<<`` in one mapping is a duplicate key too; in
``<<: [*a, *b]`` the earlier mapping wins, as YAML 1.1's merge type says; a mapping that merges
itself, or a mapping it is inside of, is refused (PyYAML merges what it has built so far:
nothing); merges copy at most ``MAX_MERGED_KEYS`` keys in all; and a base-60 number
(``1:30:00``) is at most 64 characters (PyYAML reads one in time quadratic in its length).
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.composer import Composer, ComposerError
from yaml.events import AliasEvent, MappingEndEvent, ScalarEvent, SequenceEndEvent, SequenceStartEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

#: libyaml's safe loader when PyYAML was built with it (ten times faster at parsing), else
#: the pure-Python one.
SAFE_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_STR = "tag:yaml.org,2002:str"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "tag:yaml.org,2002:merge"
_VALUE = "tag:yaml.org,2002:value"
_SET = "tag:yaml.org,2002:set"
_OMAP = "tag:yaml.org,2002:omap"
_PAIRS = "tag:yaml.org,2002:pairs"
#: what these tags build is a list, dict or set: never hashable, never a key
_COLLECTIONS = frozenset({_MAP, _SEQ, _SET, _OMAP, _PAIRS})
#: Numbers PyYAML also reads in base 60 (``1:30:00``), in time quadratic in their length.
_SEXAGESIMAL = frozenset({"tag:yaml.org,2002:int", "tag:yaml.org,2002:float"})
#: The longest base-60 number built (an int past 2^63 is refused later anyway).
_MAX_SEXAGESIMAL_CHARS = 64


#: Keys all the merge keys (``<<``) of one document may copy, together.
MAX_MERGED_KEYS = 1_000_000


class LimitExceeded(Exception):
    """The document has more values, or deeper nesting, than the caller allows; the message
    says which limit."""


class _Limits:
    """A composer that counts value nodes (mapping keys are not values; an alias counts once)
    and nesting depth as libyaml's parser produces their events, in place of PyYAML's
    ``Composer`` (same nodes and errors; no path resolvers, which the safe loader has none of).
    Mixed in before the loader class, whose ``get_single_node`` then composes with it."""

    anchors: dict[Any, Node]
    get_event: Any
    peek_event: Any
    check_event: Any
    resolve: Any

    def _set_limits(self, max_values: int | None, max_depth: int | None) -> None:
        self.anchors = {}  # Composer's own state; CParser.__init__ does not set it
        self._max_values = max_values
        #: values still allowed (the root counts, as in ``document_problem``); None: no limit
        self._budget: int | None = max_values
        self._max_depth = 1 << 30 if max_depth is None else max_depth

    def compose_document(self) -> Node:
        self.get_event()  # DocumentStartEvent
        node = self._compose(0)
        self.get_event()  # DocumentEndEvent
        self.anchors = {}
        return node

    def _compose(self, depth: int, *, key: bool = False) -> Node:
        if self._budget is not None and not key:
            self._budget -= 1
            if self._budget < 0:
                raise LimitExceeded(f"document too large: over {self._max_values} values")
        event = self.get_event()
        kind = type(event)
        if kind is AliasEvent:
            if event.anchor not in self.anchors:
                raise ComposerError(None, None, f"found undefined alias {event.anchor!r}", event.start_mark)
            return self.anchors[event.anchor]
        anchor = event.anchor
        if anchor is not None and anchor in self.anchors:
            raise ComposerError(
                f"found duplicate anchor {anchor!r}; first occurrence",
                self.anchors[anchor].start_mark,
                "second occurrence",
                event.start_mark,
            )
        if kind is ScalarEvent:
            tag = event.tag
            if tag is None or tag == "!":
                tag = self.resolve(ScalarNode, event.value, event.implicit)
            node: Node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, style=event.style)
            if anchor is not None:
                self.anchors[anchor] = node
            return node
        if depth >= self._max_depth:
            raise LimitExceeded(f"nested too deeply (at most {self._max_depth} levels)")
        tag = event.tag
        if kind is SequenceStartEvent:
            if tag is None or tag == "!":
                tag = self.resolve(SequenceNode, None, event.implicit)
            seq = SequenceNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
            if anchor is not None:
                self.anchors[anchor] = seq
            items = seq.value
            while not self.check_event(SequenceEndEvent):
                items.append(self._compose(depth + 1))
            seq.end_mark = self.get_event().end_mark
            return seq
        if tag is None or tag == "!":
            tag = self.resolve(MappingNode, None, event.implicit)
        mapping = MappingNode(tag, [], event.start_mark, None, flow_style=event.flow_style)
        if anchor is not None:
            self.anchors[anchor] = mapping
        pairs = mapping.value
        while not self.check_event(MappingEndEvent):
            key_node = self._compose(depth + 1, key=True)  # a key is not a value
            pairs.append((key_node, self._compose(depth + 1)))
        mapping.end_mark = self.get_event().end_mark
        return mapping


if SAFE_LOADER is yaml.SafeLoader:  # pragma: no cover  (PyYAML without libyaml)

    class _Loader(_Limits, yaml.SafeLoader):
        def __init__(self, text: str, max_values: int | None, max_depth: int | None) -> None:
            yaml.SafeLoader.__init__(self, text)
            self._set_limits(max_values, max_depth)

else:

    class _Loader(_Limits, Composer, SAFE_LOADER):  # type: ignore[no-redef,misc]
        def __init__(self, text: str, max_values: int | None, max_depth: int | None) -> None:
            SAFE_LOADER.__init__(self, text)
            self._set_limits(max_values, max_depth)


def load(text: str, *, max_values: int | None = None, max_depth: int | None = None) -> Any:
    """The document in ``text`` (None when empty); see ``load_with_root``."""
    return load_with_root(text, max_values=max_values, max_depth=max_depth)[0]


def load_with_root(
    text: str, *, max_values: int | None = None, max_depth: int | None = None
) -> tuple[Any, Node | None]:
    """The document in ``text`` (None when empty), as ``yaml.load(text, SAFE_LOADER)`` gives
    it (but for merge keys and duplicate keys, above), and its root node, whose marks say
    where each part is (``kiok.dag.locate.line_in``). Raises ``LimitExceeded`` at the first
    value past ``max_values`` or level past ``max_depth``, and what PyYAML raises:
    ``yaml.YAMLError`` (marked with the place), ``ValueError`` or ``OverflowError`` for a
    scalar that cannot be built, ``RecursionError`` past the interpreter's depth."""
    loader = _Loader(text, max_values, max_depth)
    try:
        root = loader.get_single_node()
        if root is None:
            return None, None
        return _Builder(loader).build(root), root
    finally:
        loader.dispose()


def compose(text: str, *, max_values: int | None = None, max_depth: int | None = None) -> Node | None:
    """The root node of ``text`` (None when empty), within the same limits as ``load``."""
    loader = _Loader(text, max_values, max_depth)
    try:
        root: Node | None = loader.get_single_node()
        return root
    finally:
        loader.dispose()


class _Builder:
    """Nodes to objects. An alias is the same node object as its anchor, so each collection
    node is built once (``_built``): shared values stay shared, and a document of aliases
    of aliases costs its nodes, not its expansion."""

    def __init__(self, loader: Any) -> None:
        self._loader = loader
        self._built: dict[int, Any] = {}
        #: mapping nodes whose keys are being built: merging one of them is merging a mapping
        #: into itself (``&a {<<: *a}``), which has no value
        self._open: set[int] = set()
        #: Keys merge keys copied so far (``MAX_MERGED_KEYS``); each merged source counts
        #: one at least (an empty one too: chains of them must not cost nothing).
        self._merged_keys = 0
        #: The pairs of merged mappings that are no plain map (a ``!!set``), built once.
        self._merge_sources: dict[int, dict[Any, Any]] = {}

    def build(self, node: Node) -> Any:
        if isinstance(node, ScalarNode):
            if node.tag == _STR:
                return node.value
            if node.tag in _SEXAGESIMAL and ":" in node.value and len(node.value) > _MAX_SEXAGESIMAL_CHARS:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"a base-60 number (a:b:c) of over {_MAX_SEXAGESIMAL_CHARS} characters",
                    node.start_mark,
                )
            return self._loader.construct_object(node, deep=True)
        done = self._built.get(id(node))
        if done is not None:
            return done
        tag = node.tag
        if isinstance(node, SequenceNode):
            if tag == _SEQ:
                items: list[Any] = []
                self._built[id(node)] = items
                items.extend(self.build(child) for child in node.value)
                return items
            if tag in (_OMAP, _PAIRS):
                return self._pairs(node, unique=tag == _OMAP)
        elif isinstance(node, MappingNode):
            if tag == _MAP:
                mapping: dict[Any, Any] = {}
                self._built[id(node)] = mapping
                mapping.update(self._mapping(node))
                return mapping
            if tag == _SET:
                members: set[Any] = set()
                self._built[id(node)] = members
                members.update(self._mapping(node))
                return members
        # Any other tag on a collection: PyYAML's safe constructors refuse it (a scalar tag, an
        # unknown one) before they build anything inside it.
        self._loader.construct_object(node, deep=True)
        raise yaml.constructor.ConstructorError(  # pragma: no cover  (a constructor that accepts it)
            None, None, f"cannot build a {getattr(node, 'id', 'node')} tagged {tag!r}", node.start_mark
        )

    def _mapping(self, node: MappingNode) -> dict[Any, Any]:
        """The keys and values of a mapping node: merged keys first, as PyYAML orders them,
        then its own, which win over merged ones; a key given twice is an error."""
        own: dict[Any, Any] = {}
        merged: dict[Any, Any] | None = None
        self._open.add(id(node))
        try:
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE:
                    if merged is not None:
                        raise _duplicate(key_node)
                    merged = self._merged(node, value_node)
                    continue
                key = self._key(node, key_node)
                if key in own:
                    raise _duplicate(key_node, key)
                own[key] = self.build(value_node)
        finally:
            self._open.discard(id(node))
        if not merged:
            return own
        out = {k: v for k, v in merged.items() if k not in own}
        out.update(own)
        return out

    def _key(self, node: MappingNode, key_node: Node) -> Any:
        """A mapping key as PyYAML resolves it (``1``, ``true``, ``2024-01-02`` are an int, a
        bool, a date), so keys equal once resolved are found to be the same key."""
        tag = key_node.tag
        if tag == _STR or (tag == _VALUE and isinstance(key_node, ScalarNode)):
            return key_node.value  # PyYAML reads the value key ``=`` as the string '='
        if isinstance(key_node, ScalarNode) or tag not in _COLLECTIONS:
            key = self._loader.construct_object(key_node, deep=True)  # refuses an unknown tag
            try:
                hash(key)
            except TypeError:
                pass
            else:
                return key
        raise yaml.constructor.ConstructorError(
            "while constructing a mapping", node.start_mark, "found unhashable key", key_node.start_mark
        )

    def _merged(self, node: MappingNode, value_node: Node) -> dict[Any, Any]:
        """The keys a ``<<`` brings in: one mapping's, or a list of mappings' where the
        earlier mapping wins a key they share (YAML 1.1 merge type). A mapping named twice in
        the list is merged once (it has nothing more to give the second time)."""
        sources = value_node.value if isinstance(value_node, SequenceNode) else [value_node]
        out: dict[Any, Any] = {}
        seen: set[int] = set()
        for source in sources:
            if not isinstance(source, MappingNode):
                found = getattr(source, "id", "scalar")
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"expected a mapping or list of mappings for merging, but found {found}",
                    source.start_mark,
                )
            if id(source) in self._open:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    "found a merge key that merges a mapping it is part of (a recursive merge)",
                    source.start_mark,
                )
            if id(source) in seen:
                continue
            seen.add(id(source))
            # A merged mapping's pairs count whatever its tag, as in PyYAML.
            if source.tag == _MAP:
                pairs = self.build(source)
            else:
                found = self._merge_sources.get(id(source))
                pairs = (
                    found
                    if found is not None
                    else self._merge_sources.setdefault(id(source), self._mapping(source))
                )
            self._merged_keys += max(1, len(pairs))
            if self._merged_keys > MAX_MERGED_KEYS:
                # Each merge copies its keys: 100,000 merges of one 100,000-key mapping fit in a
                # few MiB and would copy 10^10 keys. Counted apart from the values (a merge
                # shares them), with room for tens of thousands of tasks merging defaults.
                raise LimitExceeded(
                    f"document too large: its merge keys (<<) copy over {MAX_MERGED_KEYS} keys"
                )
            for key, value in pairs.items():
                out.setdefault(key, value)
        return out

    def _pairs(self, node: SequenceNode, *, unique: bool) -> list[tuple[Any, Any]]:
        """``!!omap`` (keys unique, YAML 1.1) or ``!!pairs`` (keys may repeat): a list of
        one-pair mappings, as a list of (key, value) tuples as PyYAML gives them."""
        pairs: list[tuple[Any, Any]] = []
        self._built[id(node)] = pairs
        context = "while constructing an ordered map" if unique else "while constructing pairs"
        keys: set[Any] = set()
        for sub in node.value:
            if not isinstance(sub, MappingNode):
                raise yaml.constructor.ConstructorError(
                    context,
                    node.start_mark,
                    f"expected a mapping of length 1, but found {sub.id}",
                    sub.start_mark,
                )
            if len(sub.value) != 1:
                raise yaml.constructor.ConstructorError(
                    context,
                    node.start_mark,
                    f"expected a single mapping item, but found {len(sub.value)} items",
                    sub.start_mark,
                )
            key_node, value_node = sub.value[0]
            key = self.build(key_node)
            if unique:
                try:
                    if key in keys:
                        raise _duplicate(key_node, key)
                    keys.add(key)
                except TypeError:  # an unhashable key: PyYAML allows one in an omap
                    pass
            pairs.append((key, self.build(value_node)))
        return pairs


def _duplicate(key_node: Node, key: Any = "<<") -> yaml.constructor.ConstructorError:
    """``found duplicate key 'timeout'``; for a key that is not written as it resolves, also
    what it resolves to (``found duplicate key 'yes' (read as True, equal to an earlier key)``)."""
    written = key_node.value if isinstance(key_node, ScalarNode) else key
    problem = f"found duplicate key {written!r}"
    if written != key or type(written) is not type(key):
        problem += f" (read as {key!r}, equal to an earlier key)"
    return yaml.constructor.ConstructorError(None, None, problem, key_node.start_mark)
