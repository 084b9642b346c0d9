"""Importing the app does no network: audited in a fresh interpreter (the benchmark times it)."""

from benchmarks.run import cold_start


def test_import_function_app_makes_no_network_call() -> None:
    figures = cold_start(runs=1)
    assert figures["network_calls"] == []
