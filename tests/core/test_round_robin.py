"""The cursor walks a list in bounded windows, wrapping, even when the list changes."""

from rumordb.core.round_robin import Cursor


def test_windows_walk_the_list_and_wrap() -> None:
    cursor = Cursor()
    items = list("abcde")
    assert [cursor.window(items, 2) for _ in range(4)] == [
        ["a", "b"],
        ["c", "d"],
        ["e"],
        ["a", "b"],
    ]


def test_an_empty_list_gives_an_empty_window_and_a_shrunk_list_wraps() -> None:
    cursor = Cursor(position=7)
    assert cursor.window([], 3) == []
    assert cursor.window(["a", "b", "c"], 2) == ["b", "c"]  # 7 % 3 == 1
