"""One way to write a duration, shared by the CLI and the console."""

from conveyor.durations import format_duration


def test_durations_round_to_the_nearest_second_and_read_alike_everywhere() -> None:
    assert [format_duration(s) for s in (0.4, 0.6, 59.5, 125, 3723, -2)] == ["0s", "1s", "1m 00s", "2m 05s", "1h 02m 03s", "0s"]
