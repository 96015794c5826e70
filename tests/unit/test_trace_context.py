import pytest

from ledger.trace_context import TraceParent

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


@pytest.mark.parametrize(
    ("value", "sampled"),
    [
        (f"00-{TRACE}-{SPAN}-01", True),
        (f"00-{TRACE}-{SPAN}-00", False),
        (f"00-{TRACE}-{SPAN}-09", True),  # an unknown flag beside sampled
        (f"00-{TRACE}-{SPAN}-02", False),
        (f" \t00-{TRACE}-{SPAN}-01\t ", True),  # optional white space around the value
        (f"cc-{TRACE}-{SPAN}-01", True),  # a later version, read by version 00's fields
        (f"cc-{TRACE}-{SPAN}-01-what-the-future-will-be-like", True),
    ],
)
def test_a_valid_traceparent_names_its_trace_and_the_callers_span(
    value: str, sampled: bool
) -> None:
    assert TraceParent.parse(value) == TraceParent(TRACE, SPAN, sampled)


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        f"00-{TRACE}-{SPAN}",  # no flags
        f"00-{TRACE}-{SPAN}-1",
        f"00-{TRACE}-{SPAN}-01-",  # version 00 is exactly 55 characters
        f"00-{TRACE}-{SPAN}-01-what-the-future-will-be-like",
        f"00-{TRACE.upper()}-{SPAN}-01",  # ids are lowercase hex
        f"00-{TRACE}-{SPAN.upper()}-01",
        f"00-{TRACE}-{SPAN}-0A",
        f"0A-{TRACE}-{SPAN}-01",
        f"00-{'0' * 32}-{SPAN}-01",  # all-zero ids are invalid
        f"00-{TRACE}-{'0' * 16}-01",
        f"ff-{TRACE}-{SPAN}-01",  # version ff is forbidden
        f"00-{TRACE[:-1]}-{SPAN}-01",
        f"00-{TRACE}0-{SPAN}-01",
        f"00-{TRACE}-{SPAN[:-1]}-01",
        f"00_{TRACE}_{SPAN}_01",
        f"00-{TRACE}-{SPAN}-01\n",
        f"00-{TRACE[:16]} {TRACE[17:]}-{SPAN}-01",
        f"cc-{TRACE}-{SPAN}-01.extra",  # a later version's fields follow a dash
        f"0-0{TRACE}-{SPAN}-01",
    ],
)
def test_a_malformed_traceparent_is_no_trace_context(value: str) -> None:
    assert TraceParent.parse(value) is None


def test_a_traceparent_is_written_as_version_00_with_only_the_sampled_flag() -> None:
    parsed = TraceParent.parse(f"cc-{TRACE}-{SPAN}-ff-more")
    assert str(parsed) == f"00-{TRACE}-{SPAN}-01"
    assert str(TraceParent(TRACE, SPAN)) == f"00-{TRACE}-{SPAN}-00"


def test_a_child_is_a_new_span_of_the_same_trace_sampled_as_its_parent() -> None:
    parent = TraceParent(TRACE, SPAN, sampled=True)
    child = parent.child()
    assert (child.trace_id, child.sampled) == (TRACE, True)
    assert child.parent_id != SPAN
    assert TraceParent.parse(str(child)) == child


def test_a_new_trace_is_valid_and_new_each_time() -> None:
    started = [TraceParent.start() for _ in range(100)]
    assert all(TraceParent.parse(str(span)) == span for span in started)
    assert len({span.trace_id for span in started}) == 100
