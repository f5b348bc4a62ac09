"""Parse fal's TypeScript types in shared/reference/kling-catalogue.md into a table per endpoint id.

``python scripts/kling_catalogue.py [path]`` prints JSON: ``{id: {field: {"required", "enum",
"default"}}}``. The tests import ``parse`` to check every served input schema against it.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

_ID_LINE = re.compile(r"^- `(fal-ai/[^`]+)`: input `(\w+)`", re.M)
_ALIAS = re.compile(r"^export type (\w+) = (\w+);", re.M)
_BODY = re.compile(r"^export type (\w+) = \{\n(.*?)^\}", re.M | re.S)
_FIELD = re.compile(r"/\*\*(?P<doc>.*?)\*/\s*(?P<name>\w+)(?P<opt>\??):\s*(?P<type>.*?);", re.S)
_DEFAULT = re.compile(r"Default value: `(.*?)`")


def _default(doc: str):
    found = _DEFAULT.search(doc)
    if not found:
        return None
    raw = found.group(1)
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def _fields(body: str) -> dict:
    out = {}
    for m in _FIELD.finditer(body):
        kind = " ".join(m.group("type").split())
        enum = re.findall(r'"([^"]*)"', kind) if kind.lstrip("| ").startswith('"') else None
        out[m.group("name")] = {
            "required": not m.group("opt"),
            "enum": enum,
            "default": _default(m.group("doc")),
            "type": kind,
        }
    return out


def parse(path: str | Path) -> dict[str, dict]:
    text = Path(path).read_text()
    aliases = dict(_ALIAS.findall(text))
    bodies = {name: _fields(body) for name, body in _BODY.findall(text)}
    table = {}
    for endpoint_id, input_type in _ID_LINE.findall(text):
        name = input_type
        while name not in bodies and name in aliases:
            name = aliases[name]
        table[endpoint_id] = bodies[name]
    return table


def nested(path: str | Path) -> dict[str, dict]:
    """The element types by name (KlingV3MultiPromptElement, OmniVideoElementInput …)."""
    text = Path(path).read_text()
    return {name: _fields(body) for name, body in _BODY.findall(text)}


if __name__ == "__main__":
    source = sys.argv[1] if len(sys.argv) > 1 else "../shared/reference/kling-catalogue.md"
    json.dump(parse(source), sys.stdout, indent=1)
    print()
