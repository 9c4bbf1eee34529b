"""Numbers read the same way in every reason."""

from __future__ import annotations

import pytest

from murmur.scheduler.wording import (
    datasets_phrase,
    format_cpus,
    format_gib,
    gpu_phrase,
    join_names,
)


@pytest.mark.parametrize(
    ("size", "text"),
    [(64 * 2**30, "64 GiB"), (3 * 2**29, "1.5 GiB"), (2**20, "<0.1 GiB"), (0, "0 GiB")],
)
def test_bytes_read_as_gib(size: int, text: str) -> None:
    assert format_gib(size) == text


def test_cpus_and_gpus_are_counted_with_their_noun() -> None:
    assert format_cpus(1) == "1 CPU"
    assert format_cpus(16) == "16 CPUs"
    assert format_cpus(0.5) == "0.5 CPUs"
    assert format_cpus(8, adjective="free") == "8 free CPUs"
    assert gpu_phrase(1, "A100", adjective="free") == "1 free A100 GPU"
    assert gpu_phrase(4) == "4 GPUs"


def test_lists_join_like_prose_and_stop_after_three() -> None:
    assert join_names([]) == ""
    assert join_names(["a"]) == "a"
    assert join_names(["a", "b"]) == "a and b"
    assert join_names(["a", "b", "c"]) == "a, b and c"
    assert join_names(["a", "b", "c", "d", "e"]) == "a, b, c and 2 more"
    assert datasets_phrase(["coco", "imagenet"]) == "datasets coco and imagenet"
