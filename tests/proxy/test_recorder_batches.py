"""The recorder groups ready spool segments into statements of bounded size."""

from pathlib import Path

from app.proxy.recorder import BATCH_EXCHANGES, take_batch


def segments(*counts: int) -> list[Path]:
    return [
        Path(f"/spool/{index:020d}-100-{index:06d}-{count}.ready")
        for index, count in enumerate(counts)
    ]


def test_small_segments_share_one_batch():
    ready = segments(50, 50, 50)

    batch, rest = take_batch(ready)

    assert batch == ready
    assert rest == []


def test_batch_stops_before_limit():
    ready = segments(BATCH_EXCHANGES - 10, 20, 5)

    batch, rest = take_batch(ready)

    assert batch == ready[:1]
    assert rest == ready[1:]


def test_large_segment_taken_alone():
    ready = segments(BATCH_EXCHANGES + 1, 1)

    batch, rest = take_batch(ready)

    assert batch == ready[:1]
    assert rest == ready[1:]
