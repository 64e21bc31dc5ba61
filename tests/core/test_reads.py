"""Read plans and the merge of listing pages."""

from rumordb.core import merge_pages


def test_merge_pages_orders_and_deduplicates_and_cuts_at_the_limit() -> None:
    merged = merge_pages(["b", "d"], [["a", "b"], ["c", "e", "f"]], 4)
    assert merged == ["a", "b", "c", "d"]


def test_merge_pages_with_no_peer_pages_is_the_local_page() -> None:
    assert merge_pages(["a", "b"], [], 10) == ["a", "b"]
