"""What waits for a slow client is bounded in bytes, and what may be lost is only ever a
notification: responses and server→client requests always get through, and a flood of
notifications cannot push a response out of a session's replay buffer."""

from __future__ import annotations

from gigmcp.endpoint.buffers import FrameQueue, ReplayBuffer, coalesce_key

KIB = 1024


def test_a_full_queue_drops_notifications_but_never_a_response() -> None:
    q = FrameQueue(limit=64 * KIB)
    taken = sum(q.put(b"n" * KIB) for _ in range(1000))
    assert taken == 64 and q.dropped == 1000 - 64
    assert q.put(b"r" * (512 * KIB), essential=True)  # a response over the bound: queued
    assert q.size <= 64 * KIB + 512 * KIB
    frames = [q.get_nowait() for _ in range(len(q))]
    assert frames[-1] == (b"r" * (512 * KIB), True)


def test_an_empty_queue_takes_one_notification_of_any_size() -> None:
    q = FrameQueue(limit=KIB)
    assert q.put(b"x" * (10 * KIB))
    assert not q.put(b"y")


def test_list_changed_and_resource_updates_are_coalesced_while_queued() -> None:
    q = FrameQueue(limit=1 << 20)
    key = coalesce_key("notifications/tools/list_changed")
    assert q.put(b"tools changed", key=key)
    assert not q.put(b"tools changed", key=key)
    updated = coalesce_key("notifications/resources/updated", "srv+file:///a")
    assert q.put(b"a updated", key=updated)
    assert q.put(b"b updated", key=coalesce_key("notifications/resources/updated", "b"))
    assert q.get_nowait() == (b"tools changed", False)
    assert q.put(b"tools changed again", key=key)  # once sent, the next one is news
    assert coalesce_key("notifications/progress") is None
    assert coalesce_key("notifications/message") is None


def test_a_closed_queue_stays_closed() -> None:
    q = FrameQueue(limit=KIB)
    q.close()
    assert q.get_nowait() is None and q.get_nowait() is None


def test_a_notification_flood_cannot_push_a_response_out_of_the_replay_buffer() -> None:
    replay = ReplayBuffer(limit=64 * KIB)
    replay.append(1, 1, b"response", essential=True)
    for seq in range(2, 2000):
        replay.append(1, seq, b"n" * KIB, essential=False)
    assert replay.size <= 2 * 64 * KIB
    frames = replay.after(1, 0)
    assert frames[0] == b"response"
    assert len(frames) == 1 + 64
    assert replay.after(1, 1998) == [b"n" * KIB]
