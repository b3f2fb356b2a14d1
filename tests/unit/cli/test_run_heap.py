"""``alertpipe run`` settles the heap once the engine has started (cli/run.settle_heap)."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from alertpipe.cli.run import GC_YOUNG_THRESHOLD, settle_heap


@pytest.fixture
def restore_gc() -> Iterator[None]:
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_settle_heap_freezes_what_lives_and_collects_young_objects_less_often(
        restore_gc: None) -> None:
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    settle_heap()
    assert gc.get_freeze_count() > 0  # the objects alive now are no longer walked
    assert gc.get_threshold()[0] == GC_YOUNG_THRESHOLD


def test_settled_heap_still_collects_garbage_cycles_by_itself(restore_gc: None) -> None:
    settle_heap()

    class Node:
        pass

    a, b = Node(), Node()
    a.other, b.other = b, a  # type: ignore[attr-defined]
    ref = weakref.ref(a)
    del a, b
    # no gc.collect(): making twice the young threshold in live containers must run the
    # collector on its own, and it finds the cycle
    alive = [[] for _ in range(2 * GC_YOUNG_THRESHOLD)]
    assert ref() is None
    assert len(alive) == 2 * GC_YOUNG_THRESHOLD
