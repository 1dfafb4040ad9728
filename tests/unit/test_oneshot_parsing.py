"""The pure pieces of one-shot commands: endpoint targets (igrs.wire.endpoints), typed text
arguments (igrs.wire.typed_text), the PIN wording (igrs.node.pin_text)."""

from __future__ import annotations

import pytest

from igrs.node.pin_text import pin_prompt, pin_shown
from igrs.wire.bodies.services import ActionDesc, ParamDesc, ServiceDescription
from igrs.wire.endpoints import parse_endpoint
from igrs.wire.typed_text import arguments_from_text, decode_value, encode_value, from_json, from_text


@pytest.mark.parametrize(("text", "host", "port", "location"), [
    ("127.0.0.1:3880", "127.0.0.1", 3880, "http://127.0.0.1:3880/IGRS"),
    ("tv.local:4000", "tv.local", 4000, "http://tv.local:4000/IGRS"),
    ("[fe80::1%eth0]:3880", "fe80::1%eth0", 3880, "http://[fe80::1%eth0]:3880/IGRS"),
    ("[::1]:3880", "::1", 3880, "http://[::1]:3880/IGRS"),
    ("http://10.0.0.5:3880/IGRS", "10.0.0.5", 3880, "http://10.0.0.5:3880/IGRS"),
    ("http://10.0.0.5:3880", "10.0.0.5", 3880, "http://10.0.0.5:3880/IGRS"),
    ("http://10.0.0.5/other", "10.0.0.5", 80, "http://10.0.0.5:80/other"),
    (" 127.0.0.1:3880 ", "127.0.0.1", 3880, "http://127.0.0.1:3880/IGRS"),
])
def test_an_endpoint_target_is_read_one_way(text: str, host: str, port: int, location: str) -> None:
    endpoint = parse_endpoint(text)
    assert endpoint is not None
    assert (endpoint.host, endpoint.port, endpoint.location) == (host, port, location)
    assert endpoint.description_url.endswith(f":{port}/IGRS/description.xml")


@pytest.mark.parametrize("text", [
    "Living room TV", "89f7ff27", "urn:IGRS:Device:DeviceId:89f7ff27-f880-4022-849f-b16a6cd77896",
    "127.0.0.1:0", "127.0.0.1:70000", "https://10.0.0.5/IGRS", "ftp://10.0.0.5:21", "", "host:", ":3880",
])
def test_anything_else_is_not_an_endpoint(text: str) -> None:
    assert parse_endpoint(text) is None


def test_a_resolved_endpoint_keeps_its_path() -> None:
    named = parse_endpoint("http://tv.local:81/x/IGRS")
    assert named is not None and named.at("10.0.0.1").location == "http://10.0.0.1:81/x/IGRS"
    assert named.at("fe80::1").location == "http://[fe80::1]:81/x/IGRS"


def test_only_ip_literals_count_as_literal() -> None:
    assert parse_endpoint("10.1.2.3:1").is_literal  # type: ignore[union-attr]
    assert parse_endpoint("[fe80::1%lo]:1").is_literal  # type: ignore[union-attr]
    assert not parse_endpoint("tv.local:1").is_literal  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "expr", "value"), [
    ("0", "string", "0"), ('"0"', "string", "0"), ("true", "string", "true"), ("", "string", ""),
    ("  x ", "string", "  x "), ('"a', "string", '"a'),
    ("30", "int", 30), ("-7", "int", -7), (" 5 ", "int", 5),
    ("2.5", "float", 2.5), ("3", "float", 3.0),
    ("true", "bool", True), ("No", "bool", False), ("1", "bool", True), ("off", "bool", False),
    ("aGk=", "bytes", b"hi"),
    ("[1, 2]", "list[int]", [1, 2]), ('["a", "b"]', "list[string]", ["a", "b"]),
    ('{"k": 1.5}', "dict[float]", {"k": 1.5}), ('["aGk="]', "list[bytes]", [b"hi"]),
    ('[{"$bytes": "aGk="}]', "list[bytes]", [b"hi"]),
])
def test_text_is_read_as_the_declared_type(text: str, expr: str, value: object) -> None:
    got = from_text(text, expr, "A.x")
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize(("text", "expr"), [
    ("abc", "int"), ("1.5", "int"), ("true", "int"), ("nan", "float"), ("inf", "float"), ("maybe", "bool"),
    ("not base64!", "bytes"), ("[1, 2", "list[int]"), ('["a"]', "list[int]"), ("[true]", "list[int]"),
    ("{}", "list[int]"), ("[]", "dict[int]"),
])
def test_text_that_does_not_fit_says_so(text: str, expr: str) -> None:
    with pytest.raises(ValueError, match=r"A\.x.*expected"):
        from_text(text, expr, "A.x")


def test_json_values_convert_and_bytes_round_trip() -> None:
    assert from_json(3, "float", "v") == 3.0
    assert decode_value(encode_value({"a": [b"\x00\xff"]})) == {"a": [b"\x00\xff"]}
    with pytest.raises(ValueError):
        from_json(True, "int", "v")


BROWSE = ActionDesc("Browse", (ParamDesc("ObjectID", "string"), ParamDesc("StartingIndex", "int", False),
                               ParamDesc("Flags", "list[string]", False)), "dict[string]")


def test_key_value_words_become_typed_arguments() -> None:
    assert arguments_from_text(BROWSE, ["ObjectID=0", "StartingIndex=10", 'Flags=["a"]']) == {
        "ObjectID": "0", "StartingIndex": 10, "Flags": ["a"]}
    assert arguments_from_text(BROWSE, ["ObjectID=a=b"]) == {"ObjectID": "a=b"}


@pytest.mark.parametrize(("words", "reason"), [
    (["ObjectID"], "is not KEY=VALUE"),
    (["ObjectID=0", "Start=1"],
     "has no argument 'Start'; Browse\\(ObjectID: string, StartingIndex: int = optional"),
    (["StartingIndex=1"], "Browse needs ObjectID"),
    (["ObjectID=0", "StartingIndex=x"], "Browse.StartingIndex: expected int"),
])
def test_words_that_do_not_fit_the_action_name_what_it_takes(words: list[str], reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        arguments_from_text(BROWSE, words)


def test_no_such_action_lists_the_actions() -> None:
    from igrs.wire.typed_text import no_such_action

    desc = ServiceDescription("urn:IGRS:ServiceType:MediaServer:1", "Media", 3, (BROWSE, ActionDesc("Rescan")))
    assert no_such_action(desc, "Play") == "Media has no action 'Play'; its actions: Browse, Rescan"


def test_one_pin_wording() -> None:
    assert pin_shown("Den TV", "123456") == "Den TV shows PIN 123456: type it on the device asking to pair"
    assert pin_shown("Den TV", "123456", "read from pins.txt") == "Den TV shows PIN 123456: read from pins.txt"
    assert pin_prompt("Den TV", 6) == "Type the 6-digit PIN Den TV shows: "
