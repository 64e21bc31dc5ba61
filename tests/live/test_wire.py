"""HMAC framing: only authentic, fresh, first-seen frames open."""

from __future__ import annotations

import itertools

import pytest

from rumordb.live.wire import (
    BROADCAST,
    HEADER,
    HEADER_BYTES,
    MAC_BYTES,
    OVERHEAD_BYTES,
    AuthError,
    Opened,
    Signer,
    StaleFrame,
)

SECRET = "correct horse battery staple"
NEW_SECRET = "a new secret for the rotation"
NOW = 1_700_000_000.0
IDS_BYTES = len("n1") + len("n2")  # sender and recipient ids inside every frame below


class Sender:
    """``Signer`` with the ids of these tests: n1 seals for n2."""

    def __init__(self, secret: str = SECRET, previous: str | None = None) -> None:
        self.signer = Signer(secret, previous=previous)

    def seal(self, payload: bytes, now: float, recipient: str = "n2") -> bytes:
        return self.signer.seal(payload, now, "n1", recipient)


def opened(receiver: Signer, frame: bytes, now: float = NOW, recipient: str = "n2") -> bytes:
    result = receiver.open(frame, now, recipient)
    assert result.sender == "n1"
    return result.payload


def reason(signer: Signer, frame: bytes, now: float = NOW, recipient: str = "n2") -> str:
    with pytest.raises(AuthError) as caught:
        signer.open(frame, now, recipient)
    return caught.value.reason


def flip(frame: bytes, index: int) -> bytes:
    data = bytearray(frame)
    data[index] ^= 0x01
    return bytes(data)


def test_round_trip_returns_the_payload() -> None:
    frame = Sender().seal(b"hello gossip", NOW)
    assert len(frame) == len(b"hello gossip") + OVERHEAD_BYTES + IDS_BYTES
    assert Signer(SECRET).open(frame, NOW + 0.5, "n2") == Opened("n1", b"hello gossip")


def test_empty_payload_round_trips() -> None:
    assert opened(Signer(SECRET), Sender().seal(b"", NOW)) == b""


def test_tampered_payload_is_rejected() -> None:
    frame = Sender().seal(b"value=1", NOW)
    assert reason(Signer(SECRET), flip(frame, HEADER_BYTES + IDS_BYTES + 2)) == "bad mac"


def test_tampered_mac_is_rejected() -> None:
    frame = Sender().seal(b"value=1", NOW)
    assert reason(Signer(SECRET), flip(frame, len(frame) - 1)) == "bad mac"


def test_tampered_timestamp_is_rejected() -> None:
    frame = Sender().seal(b"value=1", NOW)
    assert reason(Signer(SECRET), flip(frame, 8)) == "bad mac"  # lowest timestamp byte


def test_tampered_nonce_is_rejected() -> None:
    frame = Sender().seal(b"value=1", NOW)
    assert reason(Signer(SECRET), flip(frame, 12)) == "bad mac"


def test_wrong_secret_is_rejected() -> None:
    frame = Sender("another cluster").seal(b"value=1", NOW)
    assert reason(Signer(SECRET), frame) == "bad mac"


def test_unsigned_payload_is_rejected() -> None:
    header = HEADER.pack(2, int(NOW * 1000), b"12345678", 2, 2) + b"n1n2"
    assert reason(Signer(SECRET), header + b"payload" + b"\0" * MAC_BYTES) == "bad mac"


def test_garbage_is_rejected() -> None:
    assert reason(Signer(SECRET), b"\x02" + b"x" * 100) == "truncated"  # ids of 120 bytes
    assert reason(Signer(SECRET), b"\x02" + bytes(100)) == "bad mac"


def test_other_version_is_rejected() -> None:
    frame = Sender().seal(b"value=1", NOW)
    assert reason(Signer(SECRET), b"\x01" + frame[1:]) == "version"


def test_ids_longer_than_the_frame_are_truncated() -> None:
    header = HEADER.pack(2, int(NOW * 1000), b"12345678", 255, 255)
    assert reason(Signer(SECRET), header + b"\0" * MAC_BYTES) == "truncated"


# --- bound to sender and recipient --------------------------------------------------
def test_a_frame_for_n2_is_refused_by_n3() -> None:
    frame = Sender().seal(b"value=1", NOW, recipient="n2")
    assert reason(Signer(SECRET), frame, recipient="n3") == "recipient"
    assert opened(Signer(SECRET), frame, recipient="n2") == b"value=1"


def test_rewriting_the_recipient_or_the_sender_breaks_the_seal() -> None:
    frame = Sender().seal(b"value=1", NOW, recipient="n2")
    to_n3 = frame.replace(b"n1n2", b"n1n3", 1)
    assert reason(Signer(SECRET), to_n3, recipient="n3") == "bad mac"
    from_n4 = frame.replace(b"n1n2", b"n4n2", 1)
    assert reason(Signer(SECRET), from_n4) == "bad mac"


def test_a_broadcast_frame_is_not_gossip_for_anyone() -> None:
    frame = Sender().seal(b"announce", NOW, recipient=BROADCAST)
    assert reason(Signer(SECRET), frame, recipient="n2") == "recipient"
    assert opened(Signer(SECRET), frame, recipient=BROADCAST) == b"announce"


# --- the MAC first, then the age ----------------------------------------------------
def test_an_authentic_but_stale_frame_is_told_apart_from_a_forgery() -> None:
    late = Sender().seal(b"retransmitted after a partition", NOW - 120)
    with pytest.raises(StaleFrame) as caught:
        Signer(SECRET).open(late, NOW, "n2")
    assert caught.value.authentic and caught.value.reason == "stale"
    forged_and_old = Sender("not the secret").seal(b"x", NOW - 120)
    with pytest.raises(AuthError) as forged:
        Signer(SECRET).open(forged_and_old, NOW, "n2")
    assert not forged.value.authentic and forged.value.reason == "bad mac"


# --- rotation of the cluster secret ---------------------------------------------------
def test_frames_are_signed_with_the_current_secret_and_accepted_under_either() -> None:
    rotating = Sender(NEW_SECRET, previous=SECRET)
    assert opened(Signer(NEW_SECRET), rotating.seal(b"new", NOW)) == b"new"
    assert reason(Signer(SECRET), rotating.seal(b"new", NOW)) == "bad mac"  # current, not old
    receiver = Signer(NEW_SECRET, previous=SECRET)
    assert opened(receiver, Sender(SECRET).seal(b"old", NOW)) == b"old"
    assert opened(receiver, Sender(NEW_SECRET).seal(b"new", NOW)) == b"new"
    assert reason(receiver, Sender("a third secret").seal(b"x", NOW)) == "bad mac"


def test_a_three_step_rolling_rotation_refuses_nothing_at_any_step() -> None:
    old, new = SECRET, NEW_SECRET
    steps = [
        (old, None),  # before
        (old, new),  # 1: accept new, still sign old
        (new, old),  # 2: sign new, still accept old
        (new, None),  # 3: done
    ]
    for (a_secret, a_previous), (b_secret, b_previous) in itertools.pairwise(steps):
        a = Sender(a_secret, a_previous)  # not yet restarted at this step
        b = Sender(b_secret, b_previous)  # restarted
        for sender, receiver in ((a, b), (b, a)):
            frame = sender.seal(b"gossip", NOW)
            assert opened(receiver.signer, frame) == b"gossip"


def test_replayed_frame_is_rejected() -> None:
    receiver = Signer(SECRET)
    frame = Sender().seal(b"value=1", NOW)
    assert opened(receiver, frame) == b"value=1"
    assert reason(receiver, frame, NOW + 1) == "replay"


def test_same_payload_sealed_twice_opens_twice() -> None:
    sender, receiver = Sender(), Signer(SECRET)
    assert opened(receiver, sender.seal(b"x", NOW)) == b"x"
    assert opened(receiver, sender.seal(b"x", NOW)) == b"x"


@pytest.mark.parametrize("skew_s", [-31.0, 31.0])
def test_frame_outside_the_time_window_is_stale(skew_s: float) -> None:
    frame = Sender().seal(b"value=1", NOW + skew_s)
    assert reason(Signer(SECRET), frame) == "stale"


@pytest.mark.parametrize("skew_s", [-29.0, 29.0])
def test_frame_inside_the_time_window_opens(skew_s: float) -> None:
    frame = Sender().seal(b"value=1", NOW + skew_s)
    assert opened(Signer(SECRET), frame) == b"value=1"


@pytest.mark.parametrize("length", [0, 1, HEADER_BYTES, OVERHEAD_BYTES - 1])
def test_truncated_frame_is_rejected(length: int) -> None:
    frame = Sender().seal(b"", NOW)
    assert reason(Signer(SECRET), frame[:length]) == "truncated"


def test_cut_payload_is_rejected() -> None:
    frame = Sender().seal(b"a longer payload", NOW)
    assert reason(Signer(SECRET), frame[: -MAC_BYTES - 3] + frame[-MAC_BYTES:]) == "bad mac"


def test_forged_frames_do_not_fill_the_nonce_memory() -> None:
    receiver = Signer(SECRET)
    forger = Sender("not the secret")
    for _ in range(50):
        with pytest.raises(AuthError):
            receiver.open(forger.seal(b"x", NOW), NOW, "n2")
    assert receiver.nonces_remembered == 0


def test_nonces_are_forgotten_once_their_frames_would_be_stale() -> None:
    sender, receiver = Sender(), Signer(SECRET)
    for i in range(10):
        opened(receiver, sender.seal(b"x", NOW + i), NOW + i)
    opened(receiver, sender.seal(b"x", NOW + 100), NOW + 100)
    assert receiver.nonces_remembered == 1


def test_a_full_nonce_memory_refuses_frames_it_can_no_longer_check() -> None:
    sender, receiver = Sender(), Signer(SECRET, max_nonces=3)
    frames = [sender.seal(b"x", NOW + i / 10) for i in range(5)]
    for frame in frames:
        opened(receiver, frame, NOW + 1)
    assert receiver.nonces_remembered == 3
    # The two oldest nonces were forgotten early: replaying them must still fail.
    assert reason(receiver, frames[0], NOW + 1) == "stale"
    assert reason(receiver, frames[1], NOW + 1) == "stale"
    assert reason(receiver, frames[4], NOW + 1) == "replay"
    assert opened(receiver, sender.seal(b"new", NOW + 1), NOW + 1) == b"new"


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        Signer("")
