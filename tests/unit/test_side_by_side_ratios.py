"""`bench.side_by_side` compares CPU chunk by chunk; a chunk too short for the kernel's
tick reads zero and must not end the benchmark."""

from bench.side_by_side import ratio_by_chunk


def test_a_chunk_that_read_zero_is_left_out_of_the_ratio() -> None:
    assert ratio_by_chunk([0.0, 200.0, 100.0], [150.0, 180.0, 120.0]) == "1.05"


def test_no_chunk_above_zero_says_so() -> None:
    assert ratio_by_chunk([0.0, 0.0], [10.0, 0.0]).startswith("not measured")
