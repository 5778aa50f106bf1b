"""Neutron's list semantics, derived from a resource definition: filters on
any attribute (repeated values = OR), ``fields=``, ``sort_key``/``sort_dir``,
``limit``/``marker``/``page_reverse`` with ``<collection>_links``."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from kumonet.model.errors import BadRequest, InvalidInput, NeutronError, resource_not_found
from kumonet.model.resource import ResourceDefinition

# Query parameters that are not attribute filters.
CONTROL_PARAMS = frozenset({"fields", "sort_key", "sort_dir", "limit", "marker", "page_reverse",
                            "tags", "tags-any", "not-tags", "not-tags-any"})
Resource = dict[str, Any]
Matcher = Callable[[Resource], bool]
# A resource may add matchers for filters that are not plain equality
# (``fixed_ips=ip_address=...`` on ports); they get the raw values.
SpecialFilters = Mapping[str, Callable[[list[str]], Matcher]]


@dataclass(frozen=True, slots=True)
class ListQuery:
    matchers: tuple[Matcher, ...]
    fields: tuple[str, ...]
    sort: tuple[tuple[str, bool], ...]  # (key, ascending)
    limit: int | None
    marker: str | None
    page_reverse: bool


def _convert_filter_value(definition: ResourceDefinition, name: str, raw: str) -> Any:
    attr = definition.by_name[name]
    if raw in ("None", "null") and name != "name":
        return None
    try:
        converted = attr.convert(raw)
    except InvalidInput:
        # Numbers and booleans arrive as strings: one their converter
        # refuses is a bad filter (Neutron converts filters the same way).
        raise
    except NeutronError:
        # Other refusals (lengths, formats) just match nothing, as in Neutron.
        converted = raw
    return converted


def _equality_matcher(name: str, wanted: list[Any]) -> Matcher:
    hashable = all(isinstance(w, str | int | bool | type(None)) for w in wanted)
    wanted_set = frozenset(wanted) if hashable else None

    def match(resource: Resource) -> bool:
        value = resource.get(name)
        if isinstance(value, list):
            return any(item in wanted for item in value)
        if wanted_set is not None:
            try:
                return value in wanted_set
            except TypeError:
                return False
        return value in wanted

    return match


def _tags_matcher(param: str, values: list[str]) -> Matcher:
    groups = [frozenset(t for v in values for t in v.split(",") if t)]
    wanted = groups[0]

    def match(resource: Resource) -> bool:
        tags = set(resource.get("tags") or ())
        if param == "tags":
            return wanted <= tags
        if param == "tags-any":
            return bool(wanted & tags)
        if param == "not-tags":
            return not wanted <= tags
        return not wanted & tags

    return match


def parse_query(definition: ResourceDefinition, params: Mapping[str, Sequence[str]], *,
                special: SpecialFilters | None = None) -> ListQuery:
    matchers: list[Matcher] = []
    special = special or {}
    for name, values in params.items():
        if name in CONTROL_PARAMS:
            if name.startswith(("tags", "not-tags")):
                matchers.append(_tags_matcher(name, list(values)))
            continue
        if name in special:
            matchers.append(special[name](list(values)))
            continue
        attr = definition.by_name.get(name)
        if attr is None or not attr.filterable:
            raise BadRequest(f"['{name}'] is invalid attribute for filtering")
        wanted = [_convert_filter_value(definition, name, v) for v in values]
        matchers.append(_equality_matcher(name, wanted))

    sort_keys = list(params.get("sort_key", ()))
    sort_dirs = list(params.get("sort_dir", ()))
    if len(sort_dirs) != len(sort_keys):
        raise BadRequest("The number of sort_keys and sort_dirs must be same")
    sort: list[tuple[str, bool]] = []
    for i, key in enumerate(sort_keys):
        attr = definition.by_name.get(key)
        if attr is None or not attr.sortable:
            raise BadRequest(f"['{key}'] is invalid attribute for sort_keys")
        direction = sort_dirs[i]
        if direction not in ("asc", "desc"):
            raise BadRequest(f"['{direction}'] is invalid value for sort_dirs, valid value "
                             "is 'asc' and 'desc'")
        sort.append((key, direction == "asc"))

    limit: int | None = None
    if "limit" in params:
        raw = params["limit"][-1]
        bad_limit = BadRequest(f"Bad limit request: Limit must be an integer 0 or greater "
                               f"and not '{raw}'.", type_name="BadRequest")
        try:
            limit = int(raw)
        except ValueError:
            raise bad_limit from None
        if limit < 0:
            raise bad_limit
        limit = limit or None
    marker = params["marker"][-1] if "marker" in params else None
    page_reverse = bool(params.get("page_reverse")) and \
        params["page_reverse"][-1].lower() in ("true", "1")
    fields = tuple(f for f in params.get("fields", ()) if f)
    return ListQuery(tuple(matchers), fields, tuple(sort), limit, marker, page_reverse)


def _sort_key(keys: Sequence[tuple[str, bool]]) -> Callable[[Resource], Any]:
    return lambda r: tuple(_Orderable(r.get(k), asc) for k, asc in keys)


class _Orderable:
    """Sorts None first (as SQL does ascending) and reverses for ``desc``."""

    __slots__ = ("ascending", "value")

    def __init__(self, value: Any, ascending: bool) -> None:
        self.value = value
        self.ascending = ascending

    def __lt__(self, other: _Orderable) -> bool:
        a, b = self.value, other.value
        if a == b:
            return False
        if a is None or b is None:
            less = a is None
        else:
            try:
                less = bool(a < b)
            except TypeError:
                less = str(a) < str(b)
        return less if self.ascending else not less

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Orderable) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class Page:
    items: list[Resource]
    links: list[dict[str, str]]


def apply_query(items: list[Resource], query: ListQuery, *, collection: str, base_url: str,
                params: Mapping[str, Sequence[str]], member: str = "resource") -> Page:
    selected = [r for r in items if all(m(r) for m in query.matchers)] \
        if query.matchers else items
    paginate = query.limit is not None or query.marker is not None
    keys = list(query.sort)
    if paginate and "id" not in {k for k, _ in keys}:
        keys.append(("id", keys[-1][1] if keys else True))
    if keys:
        selected = sorted(selected, key=_sort_key(keys))
    links: list[dict[str, str]] = []
    if paginate:
        start = 0
        ordered = selected[::-1] if query.page_reverse else selected
        if query.marker is not None:
            index = next((i for i, r in enumerate(ordered) if r.get("id") == query.marker), None)
            if index is None:
                # Neutron looks the marker up as a member: 404 NetworkNotFound...
                raise resource_not_found(member, query.marker)
            start = index + 1
        end = start + query.limit if query.limit is not None else len(ordered)
        page = ordered[start:end]
        more = end < len(ordered)
        if query.page_reverse:
            page.reverse()
        base = {k: list(v) for k, v in params.items()
                if k not in ("marker", "page_reverse")}
        if page:
            next_needed = more if not query.page_reverse else query.marker is not None
            prev_needed = query.marker is not None if not query.page_reverse else more
            if next_needed:
                links.append({"rel": "next",
                              "href": _href(base_url, collection, base, page[-1]["id"], False)})
            if prev_needed:
                links.append({"rel": "previous",
                              "href": _href(base_url, collection, base, page[0]["id"], True)})
        selected = page
    if query.fields:
        wanted = query.fields
        selected = [{f: r[f] for f in wanted if f in r} for r in selected]
    return Page(selected, links)


def _href(base_url: str, collection: str, params: dict[str, list[str]], marker: str,
          reverse: bool) -> str:
    query = dict(params)
    query["marker"] = [marker]
    if reverse:
        query["page_reverse"] = ["True"]
    return f"{base_url}/v2.0/{collection}?{urlencode(query, doseq=True)}"
