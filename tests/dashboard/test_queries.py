"""dashboard.queries: a page of a list read with its relations joined chooses its rows by id
first, and must hold the same rows in the same order as cutting the whole ordered list."""

import pytest

from dashboard import queries
from tests.dashboard.conftest import build_fleet


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("listing", "related", "per_page"),
    [
        # Every alert has two events and all second events share one time: the tie-break by id counts.
        (lambda: queries.alert_events(), lambda event: event.alert.rule.name, 5),
        (lambda: queries.alert_list(queries.AlertFilters(tab="resolved")), lambda alert: alert.target.slug, 1),
        # Ordered by a severity rank computed in SQL.
        (lambda: queries.alert_list(queries.AlertFilters(tab="firing")), lambda alert: alert.rule.name, 2),
        (lambda: queries.health_checks(), lambda check: (check.target.slug, check.last_result.status), 4),
    ],
)
def test_pages_of_joined_lists_hold_the_rows_of_the_whole_ordered_list(
    listing, related, per_page: int, users, make_series, django_assert_num_queries
) -> None:
    build_fleet(9, users, make_series)
    expected = [row.pk for row in listing()]
    assert len(expected) > per_page
    seen = []
    for number in range(1, -(-len(expected) // per_page) + 1):
        page = queries.paginate(listing(), number, per_page=per_page)
        assert page.number == number
        assert isinstance(page.paginator, queries.RowsByIdPaginator)
        with django_assert_num_queries(1):  # the rows and their relations in one statement
            rows = list(page)
            assert all(related(row) for row in rows)
        seen += [row.pk for row in rows]
    assert seen == expected


@pytest.mark.django_db
def test_latest_alert_events_are_the_newest_with_their_alert_and_rule(
    users, make_series, django_assert_num_queries
) -> None:
    build_fleet(9, users, make_series)
    with django_assert_num_queries(1):
        latest = queries.latest_alert_events(limit=15)
        names = [event.alert.rule.name for event in latest]
    assert [event.pk for event in latest] == [event.pk for event in queries.alert_events()[:15]]
    assert names == ["High CPU"] * 15
