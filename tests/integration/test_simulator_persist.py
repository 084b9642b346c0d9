"""The simulator's leads outlive a restart (`devstack/simulator/persist.py`): saved on change and on
stop, put back with their ids, keys and version numbers; an unreadable file is set aside, not fatal."""

from __future__ import annotations

from pathlib import Path

from devstack.simulator import Simulator
from devstack.simulator.persist import FILE_NAME, LeadKeeper


def test_leads_come_back_after_a_restart_with_their_ids_and_keys(tmp_path: Path) -> None:
    first = Simulator(state_dir=tmp_path)
    keeper = LeadKeeper(first)
    assert keeper.load() == 0
    created = first.create_lead({"hnt_domain": "kept.example", "companyname": "Kept"})
    deleted = first.create_lead({"hnt_domain": "gone.example"})
    assert created is not None and deleted is not None
    first.delete_lead(deleted["leadid"])
    keeper.stop()  # the last save

    second = Simulator(state_dir=tmp_path)
    assert LeadKeeper(second).load() == 1
    assert second.get_lead(created["leadid"]) == created
    assert second.create_lead({"hnt_domain": "KEPT.example"}) is None  # the alternate key still holds
    newer = second.create_lead({"hnt_domain": "new.example"})
    assert newer is not None and newer["versionnumber"] > created["versionnumber"]


def test_an_unchanged_simulator_is_not_written_again(tmp_path: Path) -> None:
    sim = Simulator(state_dir=tmp_path)
    keeper = LeadKeeper(sim)
    sim.create_lead({"hnt_domain": "once.example"})
    assert keeper.save() is True
    assert keeper.save() is False


def test_an_unreadable_file_is_set_aside_and_the_simulator_starts_empty(tmp_path: Path) -> None:
    (tmp_path / FILE_NAME).write_text("{not json")
    sim = Simulator(state_dir=tmp_path)
    assert LeadKeeper(sim).load() == 0
    assert sim.leads() == []
    assert (tmp_path / f"{FILE_NAME}.unreadable").read_text() == "{not json"
