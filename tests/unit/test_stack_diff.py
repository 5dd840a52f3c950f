"""Stack comparison: same digest → same; otherwise the differing files by path; missing records are unknown."""

from __future__ import annotations

from benchbed.stacks.diff import StackSummary, diff


def rec(**files: str) -> dict[str, object]:
    from benchbed.agent.stack import combine

    paths = {f"/usr/lib/{k}.so": v for k, v in files.items()}
    return {"digest": combine(paths), "files": paths}


def test_same_bytes_are_the_same_stack() -> None:
    d = diff(rec(numpy="1", python="2"), rec(python="2", numpy="1"))
    assert d.same
    assert d.summary("local", "box") == "stack identical in local and box"


def test_differences_are_named_by_file() -> None:
    d = diff(rec(numpy="1", openblas="2", python="3"), rec(numpy="9", python="3", blas="4"))
    assert not d.same
    assert d.changed == ("/usr/lib/numpy.so",)
    assert d.only_a == ("/usr/lib/openblas.so",)
    assert d.only_b == ("/usr/lib/blas.so",)
    text = d.summary("local", "box")
    assert text.startswith("stack differs between local and box")
    for name in ("numpy.so", "openblas.so", "blas.so"):
        assert name in text


def test_a_missing_record_is_unknown_not_same() -> None:
    assert diff(None, rec(a="1")).unknown
    assert not diff({"digest": None, "reason": "x"}, rec(a="1")).same


def test_long_lists_are_cut_in_the_summary() -> None:
    many = {f"l{i}": str(i) for i in range(20)}
    text = diff(rec(**many), rec()).summary("a", "b")
    assert "+14 more" in text


def test_headline() -> None:
    assert StackSummary({"local": "abcdef1234567890", "box": "abcdef1234567890"}).headline() == (
        "stack identical across local, box (digest abcdef123456…)"
    )
    mixed = StackSummary({"local": "aaaaaaaaaaaaaaaa", "box": "bbbbbbbbbbbbbbbb", "vm": None})
    assert not mixed.identical
    assert mixed.headline() == "stacks differ: local: aaaaaaaaaaaa…; box: bbbbbbbbbbbb…; vm: not recorded"
