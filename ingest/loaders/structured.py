"""Data files (XML, NDJSON, YAML) flattened to ``path: value`` lines, one record per paragraph."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.errors import CorruptFile, EmptyFile
from ingest.loaders.decoding import decode_text
from ingest.models import Section


def flatten(value: Any, prefix: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from flatten(item, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from flatten(item, f"{prefix}[{index}]")
    elif value is not None and str(value).strip():
        yield f"{prefix}: {value}" if prefix else str(value)


def _records_section(records: list[list[str]], kind: str) -> list[Section]:
    text = "\n\n".join("\n".join(lines) for lines in records if lines)
    if not text.strip():
        raise EmptyFile(f"{kind} file has no values")
    return [Section(text=text)]


def load_ndjson(data: bytes, path: Path) -> list[Section]:
    records: list[list[str]] = []
    for number, line in enumerate(decode_text(data).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(list(flatten(json.loads(line))))
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
    return _records_section([list(flatten(doc)) for doc in documents], "YAML")


def load_xml(data: bytes, path: Path) -> list[Section]:
    from lxml import etree

    # No DTDs, entities or network: XML bombs (billion laughs) and external entities stay inert.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, huge_tree=False)
    try:
        root = etree.fromstring(data, parser)
    except etree.XMLSyntaxError as exc:
        raise CorruptFile(f"invalid XML: {exc}") from exc
    if root is None:
        raise EmptyFile("XML file has no elements")
    return _records_section([xml_lines(root)], "XML")


def xml_lines(root: Any) -> list[str]:
    """``path@attribute: value`` and ``path: text`` lines of an element tree, in document order."""
    lines: list[str] = []
    _xml_lines(root, _local(root.tag), lines)
    return lines


def _xml_lines(element: Any, path: str, lines: list[str]) -> None:
    for name, value in element.attrib.items():
        if str(value).strip():
            lines.append(f"{path}@{_local(name)}: {value}")
    text = (element.text or "").strip()
    if text:
        lines.append(f"{path}: {' '.join(text.split())}")
    for child in element:
        if isinstance(child.tag, str):  # skips comments and processing instructions
            _xml_lines(child, f"{path}/{_local(child.tag)}", lines)
        tail = (child.tail or "").strip()
        if tail:
            lines.append(f"{path}: {' '.join(tail.split())}")


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
