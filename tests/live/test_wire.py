"""HMAC framing: only authentic, fresh, first-seen frames open."""

from __future__ import annotations

import pytest

from rumordb.live.wire import HEADER, HEADER_BYTES, MAC_BYTES, OVERHEAD_BYTES, AuthError, Signer

SECRET = "correct horse battery staple"
NOW = 1_700_000_000.0


def reason(signer: Signer, frame: bytes, now: float = NOW) -> str:
    with pytest.raises(AuthError) as caught:
        signer.open(frame, now)
    return caught.value.reason


def flip(frame: bytes, index: int) -> bytes:
    data = bytearray(frame)
    data[index] ^= 0x01
    return bytes(data)


def test_round_trip_returns_the_payload() -> None:
    frame = Signer(SECRET).seal(b"hello gossip", NOW)
    assert len(frame) == len(b"hello gossip") + OVERHEAD_BYTES
    assert Signer(SECRET).open(frame, NOW + 0.5) == b"hello gossip"


def test_empty_payload_round_trips() -> None:
    assert Signer(SECRET).open(Signer(SECRET).seal(b"", NOW), NOW) == b""


def test_tampered_payload_is_rejected() -> None:
    frame = Signer(SECRET).seal(b"value=1", NOW)
    assert reason(Signer(SECRET), flip(frame, HEADER_BYTES + 2)) == "bad mac"


def test_tampered_mac_is_rejected() -> None:
    frame = Signer(SECRET).seal(b"value=1", NOW)
    assert reason(Signer(SECRET), flip(frame, len(frame) - 1)) == "bad mac"


def test_tampered_timestamp_is_rejected() -> None:
    frame = Signer(SECRET).seal(b"value=1", NOW)
    assert reason(Signer(SECRET), flip(frame, 8)) == "bad mac"  # lowest timestamp byte


def test_tampered_nonce_is_rejected() -> None:
    frame = Signer(SECRET).seal(b"value=1", NOW)
    assert reason(Signer(SECRET), flip(frame, 12)) == "bad mac"


def test_wrong_secret_is_rejected() -> None:
    frame = Signer("another cluster").seal(b"value=1", NOW)
    assert reason(Signer(SECRET), frame) == "bad mac"


def test_unsigned_payload_is_rejected() -> None:
    header = HEADER.pack(1, int(NOW * 1000), b"12345678")
    assert reason(Signer(SECRET), header + b"payload" + b"\0" * MAC_BYTES) == "bad mac"


def test_garbage_is_rejected() -> None:
    assert reason(Signer(SECRET), b"\x01" + b"x" * 100) == "stale"


def test_other_version_is_rejected() -> None:
    frame = Signer(SECRET).seal(b"value=1", NOW)
    assert reason(Signer(SECRET), b"\x02" + frame[1:]) == "version"


def test_replayed_frame_is_rejected() -> None:
    receiver = Signer(SECRET)
    frame = Signer(SECRET).seal(b"value=1", NOW)
    assert receiver.open(frame, NOW) == b"value=1"
    assert reason(receiver, frame, NOW + 1) == "replay"


def test_same_payload_sealed_twice_opens_twice() -> None:
    sender, receiver = Signer(SECRET), Signer(SECRET)
    assert receiver.open(sender.seal(b"x", NOW), NOW) == b"x"
    assert receiver.open(sender.seal(b"x", NOW), NOW) == b"x"


@pytest.mark.parametrize("skew_s", [-31.0, 31.0])
def test_frame_outside_the_time_window_is_stale(skew_s: float) -> None:
    frame = Signer(SECRET).seal(b"value=1", NOW + skew_s)
    assert reason(Signer(SECRET), frame) == "stale"


@pytest.mark.parametrize("skew_s", [-29.0, 29.0])
def test_frame_inside_the_time_window_opens(skew_s: float) -> None:
    frame = Signer(SECRET).seal(b"value=1", NOW + skew_s)
    assert Signer(SECRET).open(frame, NOW) == b"value=1"


@pytest.mark.parametrize("length", [0, 1, HEADER_BYTES, OVERHEAD_BYTES - 1])
def test_truncated_frame_is_rejected(length: int) -> None:
    frame = Signer(SECRET).seal(b"", NOW)
    assert reason(Signer(SECRET), frame[:length]) == "truncated"


def test_cut_payload_is_rejected() -> None:
    frame = Signer(SECRET).seal(b"a longer payload", NOW)
    assert reason(Signer(SECRET), frame[: -MAC_BYTES - 3] + frame[-MAC_BYTES:]) == "bad mac"


def test_forged_frames_do_not_fill_the_nonce_memory() -> None:
    receiver = Signer(SECRET)
    forger = Signer("not the secret")
    for _ in range(50):
        with pytest.raises(AuthError):
            receiver.open(forger.seal(b"x", NOW), NOW)
    assert receiver.nonces_remembered == 0


def test_nonces_are_forgotten_once_their_frames_would_be_stale() -> None:
    sender, receiver = Signer(SECRET), Signer(SECRET)
    for i in range(10):
        receiver.open(sender.seal(b"x", NOW + i), NOW + i)
    receiver.open(sender.seal(b"x", NOW + 100), NOW + 100)
    assert receiver.nonces_remembered == 1


def test_a_full_nonce_memory_refuses_frames_it_can_no_longer_check() -> None:
    sender, receiver = Signer(SECRET), Signer(SECRET, max_nonces=3)
    frames = [sender.seal(b"x", NOW + i / 10) for i in range(5)]
    for frame in frames:
        receiver.open(frame, NOW + 1)
    assert receiver.nonces_remembered == 3
    # The two oldest nonces were forgotten early: replaying them must still fail.
    assert reason(receiver, frames[0], NOW + 1) == "stale"
    assert reason(receiver, frames[1], NOW + 1) == "stale"
    assert reason(receiver, frames[4], NOW + 1) == "replay"
    assert receiver.open(sender.seal(b"new", NOW + 1), NOW + 1) == b"new"


def test_empty_secret_is_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        Signer("")
