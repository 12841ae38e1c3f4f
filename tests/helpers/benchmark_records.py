"""What the benchmark records beside each figure, as the tests check it."""

from benchmarks import profiling


def check_profile(record: dict, device: str):
    """A record of what ran: a known SDPA backend and the busiest kernels with their shares."""
    assert set(record["sdpa_backend"].split("+")) <= set(profiling.SDPA_OPERATORS.values()) or \
        record["sdpa_backend"].startswith(profiling.NO_SDPA), record
    assert record["kernels"] and sum(share for _, share in record["kernels"]) <= 1 + 1e-9
    if device == "cpu":
        assert all(name.startswith("aten::") for name, _ in record["kernels"]), record
