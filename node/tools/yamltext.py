"""Block-style YAML for the files the launcher generates (compose, Prometheus, Grafana).

Enough YAML for mappings of mappings, lists and scalars; strings are always quoted (JSON
string syntax is valid YAML), so no value is ever read back as another type. Reading these
files back is the consumers' job (docker compose, Prometheus, Grafana); tests load them
with a real YAML parser where one is installed and with the consumer itself where it is.
"""

from __future__ import annotations

import json
import math
from typing import Any


def yaml_scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float) and math.isfinite(value):
        return repr(value)
    return json.dumps(str(value))


def render_yaml(value: Any, indent: int = 0) -> str:
    """Render a mapping; values are mappings, lists (of scalars or mappings) or scalars."""
    if not isinstance(value, dict):
        raise TypeError("render_yaml renders mappings only")
    pad = "  " * indent
    lines: list[str] = []
    for key, item in value.items():
        if isinstance(item, dict) and item:
            lines.append(f"{pad}{key}:")
            lines.append(render_yaml(item, indent + 1))
        elif isinstance(item, dict):
            lines.append(f"{pad}{key}: {{}}")
        elif isinstance(item, list) and not item:
            lines.append(f"{pad}{key}: []")
        elif isinstance(item, list):
            lines.append(f"{pad}{key}:")
            for element in item:
                if isinstance(element, dict) and element:
                    # "- " takes the place of the first key's indentation.
                    block = render_yaml(element, indent + 2)
                    lines.append(f"{pad}  - " + block[len(pad) + 4 :])
                elif isinstance(element, list | dict):
                    raise TypeError(f"{key}: lists of lists or empty mappings are not rendered")
                else:
                    lines.append(f"{pad}  - {yaml_scalar(element)}")
        else:
            lines.append(f"{pad}{key}: {yaml_scalar(item)}")
    return "\n".join(lines)
