"""``kiok_raft_leader_changes_total`` counts leaders seen elected, not the moments a follower
knew no leader (``ReplicatedStore.leader_id`` is None while it is cut off alone past an
election timeout): the same leader known again in the same term was not elected again."""

from __future__ import annotations

from kiok.store.replicated import LeaderElections


def test_a_leader_known_again_after_a_gap_in_the_same_term_is_not_a_new_one() -> None:
    """Before: the watch counted every leader that followed a different value, None included."""
    elected = LeaderElections()
    seen = [
        ("m1", 1),  # the first leader
        (None, 1),  # cut off alone: no leader known
        ("m1", 1),  # healed: the same leader, the same term
        (None, 2),  # an election
        ("m2", 2),  # won by another master
        ("m2", 2),
        (None, 3),
        ("m2", 3),  # re-elected in a later term
    ]
    assert [elected.see(leader, term) for leader, term in seen] == [
        True, False, False, False, True, False, False, True,
    ]  # fmt: skip
