"""Converters: each takes a decoded JSON value and returns the stored value,
or raises :class:`~kumonet.model.errors.BadRequest` with Neutron's wording.

They are plain functions (or small closures built once, at definition time),
so a resource definition names its converters directly instead of through a
string-keyed registry.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Collection
from typing import Any

from kumonet.model.errors import BadRequest, InvalidInput

Converter = Callable[[Any], Any]

_UUID = re.compile(r"^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
                   r"[0-9a-fA-F]{12}$")
_MAC = re.compile(r"^([0-9a-fA-F]{2}[:-]){5}[0-9a-fA-F]{2}$")


def _bad(message: str) -> BadRequest:
    return BadRequest(f"Invalid input for operation: {message}.")


# What oslo's bool_from_string(strict=True) accepts, as Neutron's
# convert_to_boolean does ("yes", "on", "t"...).
_TRUE = frozenset({"1", "t", "true", "on", "y", "yes"})
_FALSE = frozenset({"0", "f", "false", "off", "n", "no"})


def to_bool(value: Any) -> bool:
    """Neutron's convert_to_boolean: a refusal is ``InvalidInput`` (a
    converter's), not ``HTTPBadRequest`` (a validator's)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
    raise InvalidInput(f"'{value}' cannot be converted to boolean")


def to_int(value: Any) -> int:
    """Neutron's convert_to_int: refusals are ``InvalidInput``."""
    if isinstance(value, bool):
        raise InvalidInput(f"'{value}' is not an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
        return int(value)
    raise InvalidInput(f"'{value}' is not an integer")


def int_in_range(low: int, high: int) -> Converter:
    def convert(value: Any) -> int:
        number = to_int(value)
        if not low <= number <= high:
            raise _bad(f"'{number}' is not in range {low} through {high}")
        return number

    return convert


def string(max_len: int = 255) -> Converter:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise _bad(f"'{value}' is not a valid string")
        if len(value) > max_len:
            raise _bad(f"'{value}' exceeds maximum length of {max_len}")
        return value

    return convert


def nullable(inner: Converter) -> Converter:
    def convert(value: Any) -> Any:
        return None if value is None else inner(value)

    return convert


def one_of(*choices: str | int | None) -> Converter:
    allowed: Collection[str | int | None] = frozenset(choices)

    def convert(value: Any) -> Any:
        try:
            known = value in allowed and not isinstance(value, bool)
        except TypeError:  # unhashable (a list or a dict)
            known = False
        if not known:
            raise _bad(f"{value} is not in valid_values")  # neutron-lib's words
        return value

    return convert


def ip_version(value: Any) -> int:
    if isinstance(value, str):
        value = to_int(value)  # Neutron converts first: "x" is InvalidInput
    if isinstance(value, bool) or value not in (4, 6):
        raise _bad(f"{value} is not in valid_values")
    return int(value)


def uuid(value: Any) -> str:
    if not isinstance(value, str) or not _UUID.match(value):
        raise _bad(f"'{value}' is not a valid UUID")
    return value


def project_id(value: Any) -> str:
    """Keystone project ids are 32 hex digits but any id up to 255 is accepted."""
    return str(string(255)(value))


def mac_address(value: Any) -> str:
    if not isinstance(value, str) or not _MAC.match(value):
        raise _bad(f"'{value}' is not a valid MAC address")
    mac = value.lower().replace("-", ":")
    first = int(mac[:2], 16)
    if mac == "00:00:00:00:00:00" or first & 1:
        raise _bad(f"'{value}' is not a valid MAC address")
    return mac


def ip_address(value: Any) -> str:
    if not isinstance(value, str):
        raise _bad(f"'{value}' is not a valid IP address")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise _bad(f"'{value}' is not a valid IP address") from None


def cidr(value: Any) -> str:
    """A network in CIDR notation (host routes' destinations): host bits
    set are refused, as Neutron's ``type:subnet`` validator does."""
    if not isinstance(value, str) or "/" not in value:
        raise _bad(f"'{value}' is not a valid IP subnet")
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _bad(f"'{value}' is not a valid IP subnet") from None
    if str(net) != value and ipaddress.ip_interface(value).ip != net.network_address:
        raise _bad(f"'{value}' isn't a recommended CIDR, it should be {net}")
    return str(net)


def subnet_cidr(value: Any) -> str:
    """A subnet's ``cidr``: Neutron 29 stores ``10.0.0.1/24`` as
    ``10.0.0.0/24`` and answers anything unparsable with ``InvalidInput``."""
    try:
        if not isinstance(value, str) or "/" not in value:
            raise ValueError(value)
        return str(ipaddress.ip_network(value, strict=False))
    except ValueError:
        raise InvalidInput(f"{value} is not in a CIDR format") from None


def ip_or_cidr(value: Any) -> str:
    """An address or a prefix (allowed address pairs accept both)."""
    if isinstance(value, str) and "/" in value:
        try:
            return str(ipaddress.ip_network(value, strict=False))
        except ValueError:
            raise _bad(f"'{value}' is not a valid IP address") from None
    return ip_address(value)


def dict_body(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _bad(f"'{value}' is not a dictionary")
    return value


def list_of(inner: Converter, *, unique: bool = False) -> Converter:
    def convert(value: Any) -> list[Any]:
        if not isinstance(value, list):
            raise _bad(f"'{value}' is not a list")
        items = [inner(item) for item in value]
        if unique and len({repr(i) for i in items}) != len(items):
            raise _bad(f"Duplicate items in the list: '{value}'")
        return items

    return convert


def record(required: dict[str, Converter], optional: dict[str, Converter]) -> Converter:
    """A dict with known keys, each converted; unknown keys are refused."""

    def convert(value: Any) -> dict[str, Any]:
        body = dict_body(value)
        unknown = set(body) - set(required) - set(optional)
        if unknown:
            raise _bad(f"Unrecognized attribute(s) '{', '.join(sorted(unknown))}'")
        missing = set(required) - set(body)
        if missing:
            raise _bad(f"Missing attribute(s) '{', '.join(sorted(missing))}'")
        out: dict[str, Any] = {}
        for name, conv in (*required.items(), *optional.items()):
            if name in body:
                out[name] = conv(body[name])
        return out

    return convert


def tag(value: Any) -> str:
    text = string(255)(value)
    if not text or "," in text or "/" in text:
        raise _bad(f"'{value}' is not a valid tag")
    return str(text)
