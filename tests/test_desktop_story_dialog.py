"""desktop/story_dialog.py's validation, tested directly: the protocol's own limits, named in words."""

from __future__ import annotations

from storypulse import protocol
from storypulse.desktop.story_dialog import validate_story


def test_story_validation_uses_the_protocol_limits():
    assert validate_story("Checkout", "", [("a", "100"), ("", "0")]) == []
    assert validate_story(" ", "", [("a", "1")]) == ["The story needs a name."]
    assert "at most" in validate_story("x" * (protocol.NAME_MAX + 1), "", [("a", "1")])[0]
    assert "description" in validate_story("x", "d" * (protocol.DESCRIPTION_MAX + 1), [("a", "1")])[0]
    assert validate_story("x", "", []) == ["A story needs at least one task."]
    assert "at most" in validate_story("x", "", [("t", "1")] * (protocol.TASKS_MAX + 1))[0]
    assert "whole number" in validate_story("x", "", [("t", "1.5")])[0]
    assert "within" in validate_story("x", "", [("t", str(protocol.ESTIMATE_MS_MAX + 1))])[0]
    assert "within" in validate_story("x", "", [("t", "-1")])[0]
    assert validate_story("x", "", [("t", str(protocol.ESTIMATE_MS_MAX))]) == []
