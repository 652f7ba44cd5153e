"""The tickets list's query string read as filters: blanks are no filter, each bad value is
refused in words, and the paging link carries only what was given."""

from __future__ import annotations

import pytest

from tgrelay import errors
from tgrelay.support.models import TicketStatus
from tgrelay.ui import filters
from tgrelay.ui.tickets import TICKETS_PER_PAGE, Filters, read_filters


def test_blank_parameters_are_no_filter() -> None:
    """An empty query, or blank fields as the filter form sends them, filters nothing."""
    assert read_filters({}) == read_filters({"status": "", "assignee": " ", "desk": ""})
    assert read_filters({}) == Filters(limit=TICKETS_PER_PAGE, query={})


def test_each_filter_is_read_and_kept_for_the_paging_link() -> None:
    """Status, an agent's id, a desk, the page size and before are read; `query` holds the
    given filters but not `before`, which the Older link sets itself."""
    found = read_filters(
        {"status": "pending", "assignee": "5002", "desk": "dsk_1", "limit": "20", "before": "9"}
    )

    assert found == Filters(
        status=TicketStatus.PENDING,
        assignee_id=5002,
        desk_id="dsk_1",
        limit=20,
        before=9,
        query={"status": "pending", "assignee": "5002", "desk": "dsk_1", "limit": "20"},
    )


def test_unassigned_is_its_own_assignee_value() -> None:
    """`assignee=unassigned` asks for tickets nobody has, not for an agent's id."""
    found = read_filters({"assignee": "unassigned"})

    assert (found.unassigned, found.assignee_id, found.query) == (
        True,
        None,
        {"assignee": "unassigned"},
    )


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"status": "done"}, "unknown status 'done': one of new, open, pending, resolved, closed"),
        (
            {"assignee": "bob"},
            "the assignee is an agent's Telegram user id or 'unassigned', not 'bob'",
        ),
        ({"limit": "0"}, "the page size is a number from 1 to 200"),
        ({"limit": "201"}, "the page size is a number from 1 to 200"),
        ({"before": "-3"}, "before is a ticket number, not '-3'"),
    ],
)
def test_a_bad_value_is_refused_in_words(params: dict[str, str], message: str) -> None:
    """Each parameter's bad value is InvalidInput naming the value and what it must be."""
    with pytest.raises(errors.InvalidInput) as refused:
        read_filters(params)

    assert refused.value.message == message


def test_ticket_statuses_have_their_badge_tones() -> None:
    """A ticket the team owes a move reads bad, one waiting on the customer waiting, a done
    one good."""
    shown = {status.value: filters.tone(status.value) for status in TicketStatus}

    assert shown == {
        "new": "bad",
        "open": "bad",
        "pending": "waiting",
        "resolved": "good",
        "closed": "good",
    }
