"""Typed IGRS values (specs/services.md "Typed values") as people type them and as JSON carries
them: the one place a tool turns ``KEY=VALUE`` words into an action's arguments, by the types
the service description declares, and a value into JSON (``igrs call``, the relay gateway).

* JSON: int, float, bool, string, list and dict map to themselves; bytes are
  ``{"$bytes": "<base64>"}`` (:func:`encode_value` / :func:`decode_value`).
* Text (``from_text``), by the declared type: ``int`` and ``float`` as numbers, ``bool`` as
  true/false (also 1/0, yes/no, on/off), ``string`` as typed (a JSON-quoted string is
  unquoted: ``'"0"'`` and ``0`` are both the string ``0``), ``bytes`` as base64, and
  ``list[T]`` / ``dict[T]`` as JSON whose items are converted the same way.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Iterable
from typing import Any

from igrs.wire.bodies.services import ActionDesc, ServiceDescription, check_type_expr
from igrs.wire.bodies.sessions import Value

BYTES_TAG = "$bytes"
_TRUE, _FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")
_INT = re.compile(r"[+-]?[0-9]+\Z")
_CONTAINER = re.compile(r"(list|dict)\[(.+)\]\Z")
MAX_LISTED = 24  # names listed in a "no such action / argument" message


def encode_value(value: Any) -> Any:
    """An IGRS typed value as JSON (bytes as ``{"$bytes": base64}``)."""
    if isinstance(value, bytes | bytearray):
        return {BYTES_TAG: base64.b64encode(value).decode("ascii")}
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): encode_value(v) for k, v in value.items()}
    return value


def decode_value(value: Any) -> Any:
    """The inverse of :func:`encode_value` (ValueError on a malformed ``$bytes``)."""
    if isinstance(value, dict):
        if len(value) == 1 and BYTES_TAG in value:
            data = value[BYTES_TAG]
            if not isinstance(data, str):
                raise ValueError("$bytes must be a base64 string")
            return base64.b64decode(data, validate=True)
        return {k: decode_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_value(v) for v in value]
    return value


def _b64(text: str, where: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{where}: expected bytes (base64), got {text[:40]!r}") from None


def from_json(value: Any, expr: str, where: str) -> Value:
    """A JSON value as the declared type ``expr``; ValueError saying what did not fit."""
    check_type_expr(expr)
    m = _CONTAINER.match(expr)
    if m is not None:
        kind, inner = m.groups()
        if kind == "list" and isinstance(value, list):
            return [from_json(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        if kind == "dict" and isinstance(value, dict) and not (len(value) == 1 and BYTES_TAG in value):
            return {str(k): from_json(v, inner, f"{where}[{k!r}]") for k, v in value.items()}
    elif isinstance(value, bool) if expr == "bool" else (expr == "int" and type(value) is int):
        return value
    elif expr == "float" and isinstance(value, int | float) and not isinstance(value, bool):
        if math.isfinite(value):
            return float(value)
    elif expr == "string" and isinstance(value, str):
        return value
    elif expr == "bytes":
        if isinstance(value, str):
            return _b64(value, where)
        if isinstance(value, dict) and len(value) == 1 and isinstance(value.get(BYTES_TAG), str):
            return _b64(value[BYTES_TAG], where)
    raise ValueError(f"{where}: expected {expr}, got {json.dumps(value)[:40]}")


def from_text(text: str, expr: str, where: str) -> Value:
    """What a person typed, as the declared type ``expr``; ValueError saying what did not fit."""
    check_type_expr(expr)
    word = text.strip()
    if expr == "string":
        if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
            try:
                unquoted = json.loads(text)
            except ValueError:
                return text
            return unquoted if isinstance(unquoted, str) else text
        return text
    if expr == "int" and _INT.match(word):
        return int(word)
    if expr == "float":
        try:
            number = float(word)
        except ValueError:
            number = math.nan
        if math.isfinite(number):
            return number
    if expr == "bool" and word.lower() in _TRUE + _FALSE:
        return word.lower() in _TRUE
    if expr == "bytes":
        return _b64(word, where)
    if _CONTAINER.match(expr):
        try:
            return from_json(json.loads(text), expr, where)
        except json.JSONDecodeError:
            raise ValueError(f"{where}: expected {expr} as JSON, got {text[:40]!r}") from None
    raise ValueError(f"{where}: expected {expr}, got {text[:40]!r}")


def _listed(names: Iterable[str]) -> str:
    items = list(names)
    more = f", … ({len(items) - MAX_LISTED} more)" if len(items) > MAX_LISTED else ""
    return ", ".join(items[:MAX_LISTED]) + more if items else "none"


def signature(action: ActionDesc) -> str:
    """``SetLevel(level: int, fade: float = optional) -> int``"""
    params = ", ".join(f"{p.name}: {p.type}" + ("" if p.required else " = optional") for p in action.params)
    return f"{action.name}({params})" + (f" -> {action.result}" if action.result else "")


def no_such_action(service: ServiceDescription, name: str) -> str:
    """The reason a tool gives for an action the service does not have."""
    return f"{service.name or service.service_type} has no action {name!r}; its actions: " + _listed(
        a.name for a in service.actions)


def arguments_from_text(action: ActionDesc, words: Iterable[str]) -> dict[str, Value]:
    """``KEY=VALUE`` words as ``action``'s arguments, each by its declared type; ValueError for
    a word that is not KEY=VALUE, an argument the action does not take, a value that does
    not fit, or a required argument missing (each says what the action takes)."""
    params = {p.name: p for p in action.params}
    out: dict[str, Value] = {}
    for word in words:
        key, sep, text = word.partition("=")
        if not sep or not key:
            raise ValueError(f"argument {word!r} is not KEY=VALUE; {signature(action)}")
        param = params.get(key)
        if param is None:
            raise ValueError(f"{action.name} has no argument {key!r}; {signature(action)}")
        out[key] = from_text(text, param.type, f"{action.name}.{key}")
    missing = [p.name for p in action.params if p.required and p.name not in out]
    if missing:
        raise ValueError(f"{action.name} needs {', '.join(missing)}; {signature(action)}")
    return out


__all__ = ["BYTES_TAG", "arguments_from_text", "decode_value", "encode_value", "from_json", "from_text",
           "no_such_action", "signature"]
