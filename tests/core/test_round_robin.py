"""The cursor walks a list in bounded windows, wrapping, even when the list changes."""

from rumordb.core.round_robin import Cursor


def test_windows_walk_the_list_and_wrap() -> None:
    cursor = Cursor()
    items = list("abcde")
    assert [cursor.window(items, 2) for _ in range(4)] == [
        ["a", "b"],
        ["c", "d"],
        ["e", "a"],
        ["b", "c"],
    ]


def test_an_empty_list_gives_an_empty_window_and_a_shrunk_list_wraps() -> None:
    cursor = Cursor(position=7)
    assert cursor.window([], 3) == []
    assert cursor.window(["a", "b", "c"], 2) == ["b", "c"]  # 7 % 3 == 1


def test_a_window_larger_than_the_list_holds_each_item_once() -> None:
    cursor = Cursor(position=2)
    assert cursor.window(["a", "b", "c"], 10) == ["c", "a", "b"]


def test_a_list_that_grows_between_windows_is_still_walked_whole() -> None:
    """The cursor must not chase the tail: old items come round again."""
    cursor = Cursor()
    items = [f"old{i}" for i in range(10)]
    visits = dict.fromkeys(items, 0)
    for round_ in range(8):
        for item in cursor.window(items, 5):
            visits[item] = visits.get(item, 0) + 1
        items += [f"new{round_}a", f"new{round_}b"]  # e.g. deletes between two intervals
    assert all(visits[f"old{i}"] >= 2 for i in range(10)), visits
