"""A minimal Compound File (OLE) writer, enough to build Outlook .msg test files; no library writes them."""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

SECTOR = 512
MINI = 64
CUTOFF = 4096
FREE, END, FATSECT, NOSTREAM = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF


@dataclass
class Entry:
    name: str
    data: bytes | None = None  # None: a storage
    children: list[Entry] = field(default_factory=list)


def build_cfb(root_children: list[Entry]) -> bytes:
    root = Entry("Root Entry", None, root_children)
    entries: list[Entry] = []

    def walk(entry: Entry) -> None:
        entries.append(entry)
        for child in entry.children:
            walk(child)

    walk(root)
    ids = {id(e): i for i, e in enumerate(entries)}
    mini_data = bytearray()
    mini_fat: list[int] = []
    big: list[tuple[Entry, bytes]] = []
    start: dict[int, int] = {}
    for entry in entries[1:]:
        if entry.data is None:
            continue
        if len(entry.data) < CUTOFF:
            first = len(mini_fat)
            count = max(1, -(-len(entry.data) // MINI))
            mini_fat += [first + i + 1 for i in range(count - 1)] + [END]
            mini_data += entry.data.ljust(count * MINI, b"\0")
            start[id(entry)] = first
        else:
            big.append((entry, entry.data))
    sectors: list[bytes] = []
    fat: list[int] = []

    def allocate(blob: bytes) -> int:
        if not blob:
            return END
        first = len(sectors)
        count = -(-len(blob) // SECTOR)
        for i in range(count):
            sectors.append(blob[i * SECTOR:(i + 1) * SECTOR].ljust(SECTOR, b"\0"))
            fat.append(first + i + 1 if i < count - 1 else END)
        return first

    mini_start = allocate(bytes(mini_data))
    for entry, blob in big:
        start[id(entry)] = allocate(blob)
    mini_fat_blob = b"".join(struct.pack("<I", v) for v in mini_fat)
    mini_fat_start = allocate(mini_fat_blob)
    dir_blob = b"".join(_dir_entry(e, i, entries, ids, start, mini_start, len(mini_data)) for i, e in enumerate(entries))
    dir_start = allocate(dir_blob)
    fat_count = 1
    while (len(sectors) + fat_count) * 4 > fat_count * SECTOR:
        fat_count += 1
    fat_ids = list(range(len(sectors), len(sectors) + fat_count))
    fat += [FATSECT] * fat_count
    fat += [FREE] * (fat_count * SECTOR // 4 - len(fat))
    fat_blob = b"".join(struct.pack("<I", v) for v in fat)
    sectors += [fat_blob[i * SECTOR:(i + 1) * SECTOR] for i in range(fat_count)]
    difat = fat_ids + [FREE] * (109 - fat_count)
    header = (
        bytes.fromhex("d0cf11e0a1b11ae1") + b"\0" * 16
        + struct.pack("<HHHHH", 0x3E, 3, 0xFFFE, 9, 6) + b"\0" * 6
        + struct.pack("<IIIIIIIII", 0, fat_count, dir_start, 0, CUTOFF, mini_fat_start if mini_fat else END,
                      -(-len(mini_fat_blob) // SECTOR), END, 0)
        + b"".join(struct.pack("<I", v) for v in difat)
    )
    return header + b"".join(sectors)


def _dir_entry(entry: Entry, index: int, entries: list[Entry], ids: dict[int, int], start: dict[int, int],
               mini_start: int, mini_size: int) -> bytes:
    name = entry.name.encode("utf-16-le") + b"\0\0"
    kind = 5 if index == 0 else (1 if entry.data is None else 2)
    # Children are chained through right siblings in the compare order (length, then upper-case name).
    child = NOSTREAM
    right = NOSTREAM
    ordered = sorted(entry.children, key=lambda e: (len(e.name), e.name.upper()))
    if ordered:
        child = ids[id(ordered[0])]
    parent = next((p for p in entries if any(c is entry for c in p.children)), None)
    if parent is not None:
        siblings = sorted(parent.children, key=lambda e: (len(e.name), e.name.upper()))
        position = next(i for i, s in enumerate(siblings) if s is entry)
        if position + 1 < len(siblings):
            right = ids[id(siblings[position + 1])]
    if index == 0:
        first, size = (mini_start if mini_size else END), mini_size
    elif entry.data is None:
        first, size = 0, 0
    else:
        first, size = start[id(entry)], len(entry.data)
    return (
        name.ljust(64, b"\0") + struct.pack("<HBB", len(name), kind, 1)
        + struct.pack("<III", NOSTREAM, right, child) + b"\0" * 16 + b"\0" * 4 + b"\0" * 16
        + struct.pack("<IQ", first, size)
    )


def build_msg(subject: str, body: str, sender: str, attachments: dict[str, bytes]) -> bytes:
    """An Outlook message: subject, plain body, sender address and attachments stored by value."""

    def text(prop: int) -> tuple[int, int]:
        return (prop << 16) | 0x001F, 0

    def string_stream(tag: int, value: str) -> Entry:
        return Entry(f"__substg1.0_{tag:08X}", value.encode("utf-16-le"))

    def props(header: bytes, items: list[tuple[int, bytes]]) -> Entry:
        rows = b"".join(struct.pack("<II", tag, 0x6) + value.ljust(8, b"\0") for tag, value in items)
        return Entry("__properties_version1.0", header + rows)

    fields = {0x0037: subject, 0x1000: body, 0x001A: "IPM.Note", 0x0C1F: sender, 0x0C1A: sender}
    children = [string_stream(text(p)[0], v) for p, v in fields.items()]
    prop_rows = [(text(p)[0], struct.pack("<I", len(v.encode("utf-16-le")) + 2)) for p, v in fields.items()]
    header = struct.pack("<8xIIII8x", 0, len(attachments), 0, len(attachments))
    children.append(props(header, prop_rows))
    for number, (name, payload) in enumerate(attachments.items()):
        attach = [
            string_stream((0x3707 << 16) | 0x001F, name),
            string_stream((0x3704 << 16) | 0x001F, name),
            Entry(f"__substg1.0_{(0x3701 << 16) | 0x0102:08X}", payload),
            props(b"\0" * 8, [
                ((0x3705 << 16) | 0x0003, struct.pack("<I", 1)),
                ((0x3707 << 16) | 0x001F, struct.pack("<I", len(name.encode("utf-16-le")) + 2)),
                ((0x3701 << 16) | 0x0102, struct.pack("<I", len(payload))),
            ]),
        ]
        children.append(Entry(f"__attach_version1.0_#{number:08X}", None, attach))
    return build_cfb(children)
