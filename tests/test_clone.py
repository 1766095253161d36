"""The Clone pattern's seq bookkeeping (storypulse.clone), which watch and the desktop feed share."""

from __future__ import annotations

from storypulse.clone import APPLY, GAP, RESTARTED, STALE, SeqTracker


def test_seq_tracker_follows_the_clone_pattern():
    t = SeqTracker(restart_slack_s=1.0)
    assert t.classify(5, 0.0) == STALE  # nothing before the first snapshot
    t.reset(seq=10, ts=1000.0)
    assert t.classify(9, 999.9) == STALE  # queued before the snapshot
    assert t.classify(10, 1000.0) == STALE
    assert t.classify(11, 1000.1) == APPLY and t.seq == 11
    assert t.classify(14, 1000.2) == GAP and t.gaps == 1
    t.skip_to(14)
    assert t.classify(15, 1000.3) == APPLY
    # A low seq stamped well after the snapshot: the server restarted and counts from 1.
    assert t.classify(1, 1005.0) == RESTARTED


def test_a_low_seq_right_after_the_snapshot_is_stale_unless_stamped_later():
    t = SeqTracker(restart_slack_s=1.0)
    t.reset(seq=500, ts=1000.0)
    assert t.classify(499, 1000.5) == STALE  # queued before the snapshot, stamped within the slack
    # Nothing applied yet, but stamped after the snapshot: a new server numbering from 1.
    assert t.classify(1, 1002.0) == RESTARTED
    assert t.seq == 500  # a verdict other than APPLY moves nothing


def test_a_low_seq_after_an_applied_one_is_a_restart_however_it_is_stamped():
    """PUB delivers in order: once a message after the snapshot was applied, nothing older follows."""
    t = SeqTracker(restart_slack_s=1.0)
    t.reset(seq=500, ts=1000.0)
    assert t.classify(501, 1000.1) == APPLY
    assert t.classify(1, 1000.2) == RESTARTED  # a restart within the slack of the snapshot
    t.reset(seq=3, ts=1000.3)  # the new server's snapshot
    assert t.classify(3, 1000.3) == STALE and t.classify(4, 1000.4) == APPLY


def test_a_skipped_gap_counts_as_applied():
    t = SeqTracker()
    t.reset(seq=10, ts=1000.0)
    assert t.classify(12, 1000.1) == GAP
    t.skip_to(12)
    assert t.classify(11, 1000.2) == RESTARTED
