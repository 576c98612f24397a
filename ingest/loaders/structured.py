"""Data files (JSON, NDJSON, YAML, XML) flattened to ``path: value`` lines, one record per paragraph.

What a data file becomes is bounded before it is built: YAML aliases let ~400 bytes stand for 9^9
values, so a value's expanded size and depth are measured on the shared graph (each distinct node
once) and a file over ``max_text_bytes`` or ``max_depth`` fails before a line is written.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.errors import CorruptFile, EmptyFile
from ingest.loaders.decoding import decode_text
from ingest.loaders.limits import TextBudget, active_limits, text_too_large, too_deep
from ingest.models import Section


def flatten(value: Any, prefix: str = "", budget: TextBudget | None = None) -> Iterator[str]:
    """``path: value`` lines; ``budget`` fails the file once the lines pass the text limit."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key), budget)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{index}]", budget)
    elif value is not None and str(value).strip():
        line = f"{prefix}: {value}" if prefix else str(value)
        yield budget.take(line) if budget else line


def check_expansion(value: Any, kind: str) -> None:
    """Fail a value nested deeper than ``max_depth``, containing itself, or expanding past ``max_text_bytes``.

    Walks each distinct list or mapping once (memoised by identity), so an alias bomb is measured in
    microseconds: the size is a lower bound of the flattened text (values and keys, without the paths).
    """
    limits = active_limits()
    sizes: dict[int, tuple[int, int]] = {}  # id → (lower bound of flattened characters, height)
    open_nodes: set[int] = set()

    def measure(node: Any, depth: int) -> tuple[int, int]:
        if not isinstance(node, (dict, list)):
            return (len(str(node)) + 1 if node is not None else 0), 0
        if depth > limits.max_depth:
            raise too_deep(kind)
        key = id(node)
        if key in sizes:
            size, height = sizes[key]
            if depth + height > limits.max_depth:
                raise too_deep(kind)
            return size, height
        if key in open_nodes:
            raise CorruptFile(f"{kind} value contains itself (a recursive alias); it cannot be flattened")
        open_nodes.add(key)
        size, height = 0, 0
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for name, item in items:
            item_size, item_height = measure(item, depth + 1)
            size += item_size + (len(str(name)) if isinstance(node, dict) and item_size else 0)
            height = max(height, item_height + 1)
            if size > limits.max_text_bytes:
                raise text_too_large(size, f"{kind} expands to text that", partial=True)
        open_nodes.discard(key)
        sizes[key] = size, height
        return size, height

    measure(value, 0)


def _records_section(records: list[list[str]], kind: str) -> list[Section]:
    text = "\n\n".join("\n".join(lines) for lines in records if lines)
    if not text.strip():
        raise EmptyFile(f"{kind} file has no values")
    return [Section(text=text)]


def parse_json(text: str, kind: str = "JSON") -> Any:
    """``json.loads`` whose nesting is checked: Python's decoder gives up near 1,000 levels with a
    RecursionError; below that, ``check_expansion`` applies the configured limit."""
    try:
        value = json.loads(text)
    except RecursionError as exc:
        raise too_deep(kind) from exc
    check_expansion(value, kind)
    return value


def load_ndjson(data: bytes, path: Path) -> list[Section]:
    records: list[list[str]] = []
    budget = TextBudget()
    for number, line in enumerate(decode_text(data).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(list(flatten(parse_json(line, "NDJSON"), budget=budget)))
        except json.JSONDecodeError as exc:
            raise CorruptFile(f"invalid JSON on line {number}, column {exc.colno}: {exc.msg}") from exc
    return _records_section(records, "NDJSON")


def load_yaml(data: bytes, path: Path) -> list[Section]:
    import yaml

    class TagTolerantLoader(yaml.SafeLoader):
        """Application tags (CloudFormation ``!Ref``, Ansible ``!vault``, gcloud ``!REF``) read as plain values."""

    def untagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)  # type: ignore[arg-type]

    TagTolerantLoader.add_multi_constructor("!", untagged)
    try:
        documents = list(yaml.load_all(decode_text(data), Loader=TagTolerantLoader))  # a SafeLoader: no Python objects
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CorruptFile(f"invalid YAML{where}: {getattr(exc, 'problem', None) or exc}") from exc
    except RecursionError as exc:  # PyYAML's composer recurses once per nesting level
        raise too_deep("YAML") from exc
    check_expansion(documents, "YAML")
    budget = TextBudget()
    return _records_section([list(flatten(doc, budget=budget)) for doc in documents], "YAML")


def load_xml(data: bytes, path: Path) -> list[Section]:
    from lxml import etree

    # No DTDs, entities or network: XML bombs (billion laughs) and external entities stay inert.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        if "Excessive depth" in str(exc):  # libxml2 stops at 256 levels unless huge_tree is on
            raise too_deep("XML") from exc
        raise CorruptFile(f"invalid XML: {exc}") from exc
    if root is None:
        raise EmptyFile("XML file has no elements")
    return _records_section([xml_lines(root)], "XML")


def xml_depth(root: Any) -> int:
    from lxml import etree

    depth = deepest = 0
    for event, _ in etree.iterwalk(root, events=("start", "end")):
        depth += 1 if event == "start" else -1
        deepest = max(deepest, depth)
    return deepest


def xml_lines(root: Any) -> list[str]:
    """``path@attribute: value`` and ``path: text`` lines of an element tree, in document order.

    Entity references stay unexpanded (the parsers here never resolve them), so no entity trick grows
    the text; nesting past ``max_depth`` and text past ``max_text_bytes`` fail the file."""
    if xml_depth(root) > active_limits().max_depth:
        raise too_deep("XML")
    lines: list[str] = []
    _xml_lines(root, _local(root.tag), lines, TextBudget())
    return lines


def _xml_lines(element: Any, path: str, lines: list[str], budget: TextBudget) -> None:
    for name, value in element.attrib.items():
        if str(value).strip():
            lines.append(budget.take(f"{path}@{_local(name)}: {value}"))
    text = (element.text or "").strip()
    if text:
        lines.append(budget.take(f"{path}: {' '.join(text.split())}"))
    for child in element:
        if isinstance(child.tag, str):  # skips comments, processing instructions and entity references
            _xml_lines(child, f"{path}/{_local(child.tag)}", lines, budget)
        tail = (child.tail or "").strip()
        if tail:
            lines.append(budget.take(f"{path}: {' '.join(tail.split())}"))


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
