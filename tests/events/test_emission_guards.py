"""Every event type tgrelay emits names the test that fails when its emission is removed.

Each test below was proven by deleting the emission and watching it fail (issue 18). This
file keeps the list whole: a new emitted type without a guarding test fails here, and so
does a guard that was renamed or deleted. A reserved type (documented before its domain
emits it) is exempt until then; none is today.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tgrelay.events import catalog

ROOT = Path(__file__).parents[2]

# type → the test (file::function) that fails without the type's emission
GUARDS = {
    "message.received": "tests/e2e/test_events_e2e.py::test_message_reaches_the_endpoint_signed_once",
    "message.edited": "tests/e2e/test_events_e2e.py::"
    "test_edits_and_button_presses_arrive_and_a_pinned_endpoint_gets_its_version",
    "callback.received": "tests/e2e/test_events_e2e.py::"
    "test_edits_and_button_presses_arrive_and_a_pinned_endpoint_gets_its_version",
    "chat.throttled": "tests/e2e/test_inbound_abuse_e2e.py::"
    "test_a_chat_over_its_limit_is_stored_acknowledged_throttled_and_announced_once_per_window",
    "bot.connected": "tests/bots/test_bot_events.py::test_a_connect_is_announced_as_bot_connected",
    "bot.status_changed": "tests/bots/test_bot_events.py::"
    "test_a_health_change_is_announced_as_bot_status_changed",
    "bot.disconnected": "tests/bots/test_bot_events.py::"
    "test_a_disconnect_is_announced_as_bot_disconnected",
    "bot.secret_rotated": "tests/e2e/test_forged_e2e.py::"
    "test_a_forged_flood_rotates_the_secret_and_genuine_pushes_go_on",
    "group.connected": "tests/e2e/test_groups_e2e.py::test_same_user_links_a_group_in_two_phases",
    "group.status_changed": "tests/e2e/test_bot_ownership_e2e.py::"
    "test_disconnect_suspends_connections_and_reconnect_resumes_them",
    "notification.sent": "tests/e2e/test_groups_e2e.py::"
    "test_idempotency_key_sends_once_and_long_texts_are_split",
    "notification.failed": "tests/e2e/test_bot_ownership_e2e.py::"
    "test_a_queued_alert_fails_when_the_bot_is_disconnected",
    "endpoint.disabled": "tests/e2e/test_events_e2e.py::test_gone_disables_the_endpoint_and_says_so",
    "ticket.created": "tests/support/test_handlers.py::"
    "test_a_first_message_opens_a_ticket_with_topic_header_copy_and_greeting",
    "ticket.message_added": "tests/support/test_handlers.py::"
    "test_a_first_message_opens_a_ticket_with_topic_header_copy_and_greeting",
    "ticket.assigned": "tests/support/test_handlers.py::"
    "test_an_agent_reply_is_relayed_opens_claims_and_is_the_first_response",
    "ticket.status_changed": "tests/support/test_handlers.py::"
    "test_an_agent_reply_is_relayed_opens_claims_and_is_the_first_response",
    "ticket.first_response": "tests/support/test_handlers.py::"
    "test_an_agent_reply_is_relayed_opens_claims_and_is_the_first_response",
    "ticket.resolved": "tests/support/test_handlers.py::"
    "test_resolve_closes_the_topic_and_a_message_within_the_window_reopens",
    "ticket.sla_breached": "tests/support/test_sla_escalation.py::"
    "test_an_unanswered_ticket_breaches_once",
    "ticket.escalated": "tests/support/test_sla_escalation.py::"
    "test_the_ladder_warns_emits_then_messages_each_once",
    "desk.business_connection_changed": "tests/support/test_business.py::"
    "test_a_connection_is_recorded_and_announced_once_per_real_change",
    "conversation.started": "tests/conversations/test_handlers.py::test_a_command_starts_its_flow",
    "conversation.completed": "tests/conversations/test_handlers.py::"
    "test_each_answer_moves_the_conversation_to_its_end",
    "conversation.abandoned": "tests/conversations/test_handlers.py::"
    "test_cancel_ends_the_conversation_and_frees_the_chat",
    "conversation.step_failed": "tests/conversations/test_calls.py::"
    "test_the_first_failure_sends_the_fallback_at_once_and_the_answer_resumes",
}


def test_every_emitted_type_has_a_guard() -> None:
    """The guarded types are exactly the catalog's emitted (not reserved) ones."""
    emitted = sorted(spec.type.value for spec in catalog.CATALOG if not spec.reserved)
    assert sorted(GUARDS) == emitted


@pytest.mark.parametrize("event_type", sorted(GUARDS))
def test_each_guard_exists_and_names_its_type(event_type: str) -> None:
    """The named test is defined in its file, and its file mentions the type it guards."""
    path, name = GUARDS[event_type].split("::")
    source = (ROOT / path).read_text()
    assert (f"def {name}(" in source, event_type in source) == (True, True)
