"""Space files as untrusted input: bytes -> plain Python data, every size bounded.

PyYAML's safe loader refuses code but trusts sizes: a few hundred bytes of
nested anchors and aliases (`&a [x, x]`, `&b [*a, *a]`, ...) stand for billions
of values, and anything that prints or walks the result expands them. So this
module never hands the text to PyYAML's composer and constructor. It reads the
parser's event stream and builds the data itself, in one pass without
recursion, and refuses, with the line and the key path, before anything grows:

- a file over `MAX_BYTES`, one that is not UTF-8 text, or that holds a NUL byte;
- more than `MAX_VALUES` values counting every alias as what it stands for (an
  anchor's size is remembered, so this costs nothing per alias), an alias to an
  unknown anchor or to the value that contains it;
- nesting deeper than `MAX_DEPTH` (aliases included);
- a mapping with the same key twice (both lines named), a list or mapping as a key;
- tags other than YAML's core ones (no `!!binary`, `!!set`, `!!timestamp`, ...).

Scalars follow YAML 1.2's core schema, not PyYAML's YAML 1.1: `1e-3`, `1e6`
and `-2E+3` are floats (1.1 reads them as strings), booleans are only
true/false (`yes`, `no`, `on`, `off` stay strings), `010` is ten, there are no
timestamps and no `<<` merge keys.

`excerpt(value)` shows a value in an error message: its type and at most a few
dozen characters, found by a walk that stops as soon as it has them.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import yaml

MAX_BYTES = 1_000_000  # space files are a few hundred bytes
MAX_VALUES = 100_000  # scalars, lists and mappings, aliases counted expanded
MAX_DEPTH = 20  # lists and mappings inside each other (shipped files: 4)

_Loader = getattr(yaml, "CBaseLoader", yaml.BaseLoader)  # the parser only

# YAML 1.2 core schema (https://yaml.org/spec/1.2.2/#1032-tag-resolution).
_NULL = re.compile(r"~|null|Null|NULL|")
_TRUE = re.compile(r"true|True|TRUE")
_FALSE = re.compile(r"false|False|FALSE")
_INT = re.compile(r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+")
_FLOAT = re.compile(
    r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)"
)
# Characters YAML does not allow in a stream (it allows tab, line breaks, printables).
_UNPRINTABLE = re.compile("[^\t\n\r\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_TAG = "tag:yaml.org,2002:"
_SCALAR_TAGS = {_TAG + t for t in ("str", "int", "float", "bool", "null")}


class SpaceError(Exception):
    """A space file that cannot be used; the message names file and key.

    The text is always one line: line breaks in a key or message are escaped.
    """

    def __init__(self, path: str | Path, key: str, message: str):
        key, message = _one_line(key), _one_line(message)
        where = f"{_one_line(str(path))}: {key}: " if key else f"{_one_line(str(path))}: "
        super().__init__(where + message)
        self.path, self.key, self.message = str(path), key, message


def _one_line(text: str) -> str:
    return text.replace("\r", "\\r").replace("\n", "\\n")


# ---------------------------------------------------------------- reading
def read(path: str | Path):
    """The data in a space file; SpaceError for any file that is not a small YAML text."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise SpaceError(path, "", f"cannot read the file ({e.strerror or e})") from None
    if len(data) > MAX_BYTES:
        raise SpaceError(
            path,
            "",
            f"the file is larger than {MAX_BYTES:,} bytes; a space file is a short YAML text",
        )
    nul = data.find(b"\0")
    if nul >= 0:
        raise SpaceError(
            path, _line_column(data, nul), "a NUL byte: this is not a text file (expected YAML)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpaceError(
            path,
            _line_column(data, e.start),
            f"byte 0x{data[e.start]:02x} is not UTF-8 text (expected a YAML file in UTF-8)",
        ) from None
    return loads(text, path)


def _line_column(data: bytes, offset: int) -> str:
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return f"line {line}, column {column}"


class _Open:
    """A list or mapping whose end has not been read yet."""

    __slots__ = ("value", "anchor", "size", "height", "key", "key_line", "lines")

    def __init__(self, value, anchor):
        self.value, self.anchor = value, anchor
        self.size, self.height = 1, 1  # values in it (itself too, aliases expanded); levels
        self.key, self.key_line = _NO_KEY, 0  # mappings: the key whose value comes next
        self.lines = {}  # mappings: key -> its line


_NO_KEY = object()


def loads(text: str, path: str | Path = "<text>", key: str = ""):
    """YAML text -> data (YAML 1.2 core scalars), with the bounds above.

    Errors name `path` and the key path of the offending value (under `key`).
    """
    bad = _UNPRINTABLE.search(text)
    if bad:
        line = text.count("\n", 0, bad.start()) + 1
        column = bad.start() - (text.rfind("\n", 0, bad.start()) + 1) + 1
        where = f"line {line}, column {column}"
        raise SpaceError(
            path,
            f"{key}: {where}" if key else where,
            f"control character U+{ord(bad.group()):04X}; YAML allows only printable text",
        )
    stack: list[_Open] = []
    anchors: dict[str, tuple] = {}  # name -> (value, size, height), once complete
    open_anchors: set[str] = set()
    total = 0
    docs = 0
    root = None

    def where() -> str:
        parts = [key] if key else []
        for o in stack:
            if isinstance(o.value, list):
                parts.append(f"[{len(o.value)}]")
            elif o.key is not _NO_KEY:
                parts.append("." + label(o.key))
        text = "".join(parts).lstrip(".")
        return text if len(text) <= 80 else text[:40] + "…" + text[-39:]

    def fail(event, message):
        line = f"line {event.start_mark.line + 1}: " if event.start_mark else ""
        raise SpaceError(path, where(), line + message)

    def count(event, size):
        nonlocal total
        total += size
        if total > MAX_VALUES:
            if isinstance(event, yaml.AliasEvent):
                what = "this alias brings the file to more than"
                how = " (an alias counts as all it stands for)"
            else:
                what, how = "the file holds more than", ""
            fail(event, f"{what} {MAX_VALUES:,} values{how}; a space file needs a few dozen")

    def add(event, value, size, height):
        nonlocal root
        if len(stack) + height > MAX_DEPTH:
            fail(event, f"nested more than {MAX_DEPTH} levels deep")
        if not stack:
            root = value
            return
        parent = stack[-1]
        parent.size += size
        parent.height = max(parent.height, height + 1)
        if isinstance(parent.value, list):
            parent.value.append(value)
        elif parent.key is _NO_KEY:
            if isinstance(value, list | dict):
                fail(event, f"a key must be a single value, got a {_kind(value)}")
            parent.key, parent.key_line = value, event.start_mark.line + 1
        else:
            k = parent.key
            if k in parent.value:
                fail(
                    event,
                    f"duplicate key {label(k)!r} (lines {parent.lines[k]} and {parent.key_line})",
                )
            parent.value[k] = value
            parent.lines[k] = parent.key_line
            parent.key = _NO_KEY

    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, yaml.ScalarEvent):
                count(event, 1)
                value = _scalar(event, fail)
                if event.anchor is not None:
                    anchors[event.anchor] = (value, 1, 0)
                add(event, value, 1, 0)
            elif isinstance(event, yaml.AliasEvent):
                if event.anchor in open_anchors:
                    fail(event, f"alias *{label(event.anchor)} inside the value it names")
                if event.anchor not in anchors:
                    fail(event, f"alias *{label(event.anchor)} with no anchor before it")
                value, size, height = anchors[event.anchor]
                count(event, size)
                add(event, value, size, height)
            elif isinstance(event, yaml.CollectionStartEvent):
                is_map = isinstance(event, yaml.MappingStartEvent)
                if event.tag not in (None, "!", _TAG + ("map" if is_map else "seq")):
                    fail(event, f"unsupported tag {label(event.tag)}")
                if stack and isinstance(stack[-1].value, dict) and stack[-1].key is _NO_KEY:
                    fail(
                        event,
                        f"a key must be a single value, got a {'mapping' if is_map else 'list'}",
                    )
                if len(stack) >= MAX_DEPTH:
                    fail(event, f"nested more than {MAX_DEPTH} levels deep")
                count(event, 1)
                if event.anchor is not None:
                    anchors.pop(event.anchor, None)
                    open_anchors.add(event.anchor)
                stack.append(_Open({} if is_map else [], event.anchor))
            elif isinstance(event, yaml.CollectionEndEvent):
                o = stack.pop()
                if o.anchor is not None:
                    open_anchors.discard(o.anchor)
                    anchors[o.anchor] = (o.value, o.size, o.height)
                add(event, o.value, o.size, o.height)
            elif isinstance(event, yaml.DocumentStartEvent):
                docs += 1
                if docs > 1:
                    fail(event, "a second YAML document (---); a space file is one document")
    except yaml.YAMLError as e:
        raise _syntax_error(e, path, where()) from None
    return root


def _scalar(event, fail):
    """A scalar's value under YAML 1.2's core schema."""
    text, tag = event.value, event.tag
    if tag is None and event.implicit[0]:  # plain, untagged: resolve by its text
        for pattern, t in ((_NULL, "null"), (_TRUE, "bool"), (_FALSE, "bool")):
            if pattern.fullmatch(text):
                tag = _TAG + t
                break
        else:
            if _INT.fullmatch(text):
                tag = _TAG + "int"
            elif _FLOAT.fullmatch(text):
                tag = _TAG + "float"
            else:
                return text
    if tag in (None, "!", _TAG + "str"):
        return text
    if tag not in _SCALAR_TAGS:
        fail(event, f"unsupported tag {label(tag)}")
    kind = tag.removeprefix(_TAG)
    if kind == "null" and _NULL.fullmatch(text):
        return None
    if kind == "bool" and (_TRUE.fullmatch(text) or _FALSE.fullmatch(text)):
        return text[0] in "tT"
    if kind == "int" and _INT.fullmatch(text):
        try:
            if text.startswith(("0o", "0x")):
                return int(text[2:], 8 if text[1] == "o" else 16)
            return int(text)
        except ValueError:  # over Python's 4300 digits
            fail(event, f"an integer of {len(text):,} digits")
    if kind == "float" and _FLOAT.fullmatch(text):
        low = text.lower()
        if low.endswith(".inf"):
            return -math.inf if low.startswith("-") else math.inf
        return math.nan if low == ".nan" else float(text)
    fail(event, f"{label(text)!r} is not a valid !!{kind}")


class YAMLSyntaxError(SpaceError, yaml.YAMLError):
    """Text the YAML parser cannot read (a YAMLError too, for callers that fall back)."""


def _syntax_error(e: yaml.YAMLError, path, key: str) -> SpaceError:
    """The parser's complaint, at the key path it was reading and the line and column."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    if key:
        where = f"{key}: {where}" if where else key
    problem = getattr(e, "problem", None) or (str(e).splitlines() or [type(e).__name__])[0]
    return YAMLSyntaxError(path, where, f"YAML syntax error: {_clip(problem, 200)}")


# ---------------------------------------------------------------- messages
def excerpt(value, limit: int = 60, typed: bool = True) -> str:
    """A value for an error message: its type and at most `limit` characters of it.

    Lists and mappings are walked only until the excerpt is full, so a value
    that stands for millions of items costs as little as a short one.
    """
    out: list[str] = []
    room = [limit]

    class Full(Exception):
        pass

    def put(s: str):
        if len(s) > room[0]:
            out.append(s[: room[0]])
            raise Full
        out.append(s)
        room[0] -= len(s)

    def walk(v, depth):
        if isinstance(v, list | tuple | dict):
            if depth > 8:
                put("…")
                return
            opening, closing = ("{", "}") if isinstance(v, dict) else "[]"
            put(opening)
            for i, item in enumerate(v.items() if isinstance(v, dict) else v):
                if i:
                    put(", ")
                if isinstance(v, dict):
                    walk(item[0], depth + 1)
                    put(": ")
                    item = item[1]
                walk(item, depth + 1)
            put(closing)
        elif isinstance(v, str):
            put(repr(v[: room[0] + 1]))
        elif isinstance(v, int) and not isinstance(v, bool) and v.bit_length() > 256:
            digits = int(v.bit_length() * math.log10(2))  # repr is slow, and refused past 4300
            put(f"<{'-' if v < 0 else ''}an integer of about {digits} digits>")
        elif isinstance(v, bool | int | float) or v is None:
            put(repr(v))
        else:
            put(f"<{type(v).__name__}>")

    try:
        walk(value, 0)
        text = "".join(out)
    except Full:
        text = "".join(out) + "…"
    if not typed:
        return text
    if value is None:
        return "nothing"
    if isinstance(value, list | tuple | dict):
        n = len(value)
        return f"a {_kind(value)} of {n:,} item{'s' if n != 1 else ''} {text}"
    return f"{_kind(value)} {text}"


def _kind(value) -> str:
    return {dict: "mapping", list: "list", tuple: "list"}.get(type(value), type(value).__name__)


def label(key) -> str:
    """A key as it goes into a key path: itself if short, else clipped."""
    text = key if isinstance(key, str) else excerpt(key, 40, typed=False)
    return _clip(text, 40)


def _clip(text: str, limit: int) -> str:
    text = _one_line(text[: limit + 1])
    return text if len(text) <= limit else text[:limit] + "…"
