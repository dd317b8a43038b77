"""The one list convention on every list endpoint: limit/offset pages in the envelope with
`count`, `next` and `previous`, 400 for a malformed page, `?fields=` and `ordering` where
offered, and a number of queries that does not grow with the number of rows."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from .lists import LISTS, ListEndpoint
from .routes import api_routes

# Authentication (key, owner's groups) plus count, page and prefetches: enough for any list.
MAX_QUERIES_PER_LIST = 10
ORDERED = [
    ("/api/alert-rules", "rules", "name", "make_rules"),
    ("/api/targets", "targets", "slug", "make_targets"),
    ("/api/notification-channels", "channels", "key", "make_channels"),
    ("/api/escalation-policies", "escalation_policies", "key", "make_policies"),
    ("/api/api-keys", "api_keys", "name", "make_api_keys"),
]


def _ids(body: dict, endpoint: ListEndpoint) -> list:
    return [item["id"] for item in body[endpoint.items_key]]


def test_every_list_route_is_held_to_the_convention():
    list_paths = {route.path for route in api_routes() if route.method == "GET" and route.name.endswith("-list")}
    list_paths |= {"/api/audit-log", "/api/metrics"}
    assert list_paths == {endpoint.path for endpoint in LISTS}


@pytest.mark.parametrize("endpoint", LISTS, ids=lambda e: e.path)
def test_list_costs_the_same_queries_for_few_and_many_rows(endpoint, call, users, django_assert_max_num_queries):
    # Each count is taken on a second call: the first use of a key writes last_used_at, and
    # series labels are decoded once per process (one query for a page of new series).
    endpoint.make(2, users)
    call("admin", "GET", endpoint.path)
    with CaptureQueriesContext(connection) as few:
        small = call("admin", "GET", endpoint.path).json()
    endpoint.make(12, users)
    call("admin", "GET", endpoint.path)
    with django_assert_max_num_queries(MAX_QUERIES_PER_LIST), CaptureQueriesContext(connection) as many:
        large = call("admin", "GET", endpoint.path).json()
    assert len(large[endpoint.items_key]) >= len(small[endpoint.items_key]) + 12
    assert len(many) == len(few), "\n".join(query["sql"] for query in many.captured_queries)


@pytest.mark.parametrize("endpoint", LISTS, ids=lambda e: e.path)
def test_list_pages_with_limit_and_offset_in_the_envelope(endpoint, call, users):
    endpoint.make(5, users)
    first = call("admin", "GET", f"{endpoint.path}?limit=2").json()
    assert first["success"] is True
    assert first["previous"] is None and "offset=2" in first["next"]
    seen, url = [], f"{endpoint.path}?limit=2"
    while url:
        body = call("admin", "GET", url).json()
        assert len(body[endpoint.items_key]) <= 2
        assert body["count"] == first["count"]
        seen += _ids(body, endpoint)
        url = body["next"]
    assert len(seen) == len(set(seen)) == first["count"] >= 5
    last = call("admin", "GET", f"{endpoint.path}?limit=2&offset={first['count'] - 1}").json()
    assert len(last[endpoint.items_key]) == 1 and last["next"] is None and last["previous"]


@pytest.mark.parametrize("endpoint", LISTS, ids=lambda e: e.path)
def test_a_malformed_page_is_a_400_naming_the_parameter(endpoint, call):
    for query in ("limit=0", "limit=abc", "limit=1000000000", "offset=-1", "offset=x", "offset=99999999999999999999"):
        response = call("admin", "GET", f"{endpoint.path}?{query}")
        assert response.status_code == 400, query
        assert query.split("=")[0] in response.json()["error"]["details"], query


@pytest.mark.parametrize("endpoint", [e for e in LISTS if e.sparse], ids=lambda e: e.path)
def test_fields_keeps_only_the_named_keys(endpoint, call, users):
    endpoint.make(3, users)
    body = call("admin", "GET", f"{endpoint.path}?fields=id,status").json()
    assert body[endpoint.items_key] and all(set(item) == {"id", "status"} for item in body[endpoint.items_key])
    response = call("admin", "GET", f"{endpoint.path}?fields=id,no_such_field")
    assert response.status_code == 400
    assert "no_such_field" in response.json()["error"]["details"]["fields"][0]


@pytest.mark.parametrize(("path", "items_key", "key", "make"), ORDERED, ids=[o[0] for o in ORDERED])
def test_ordering_sorts_both_ways_and_refuses_unknown_keys(path, items_key, key, make, call, users):
    from . import lists

    getattr(lists, make)(4, users)
    ascending = [item[key] for item in call("admin", "GET", f"{path}?ordering={key}").json()[items_key]]
    descending = [item[key] for item in call("admin", "GET", f"{path}?ordering=-{key}").json()[items_key]]
    assert ascending == sorted(ascending) and descending == sorted(ascending, reverse=True)
    assert len(ascending) >= 4
    response = call("admin", "GET", f"{path}?ordering=password")
    assert response.status_code == 400 and "ordering" in response.json()["error"]["details"]
