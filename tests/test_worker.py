"""The worker's VRAM budget: the allocator capped at what the card has left beside the process."""

from types import SimpleNamespace

import pytest

MIB = 2**20


class _Card:
    """torch.cuda's allocator calls and NVML's memory figures of an 80 GiB card, stood in for on CPU."""

    def __init__(self, monkeypatch, reserved_mib, process_mib=None, device_used_mib=None, after_empty_mib=None):
        import torch

        from suite.measure import nvml

        self.reserved, self.after_empty, self.fraction = reserved_mib * MIB, after_empty_mib, None
        total = SimpleNamespace(total_memory=80 * 2**30)
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: total)
        monkeypatch.setattr(torch.cuda, "memory_reserved", lambda device=None: self.reserved)
        monkeypatch.setattr(torch.cuda, "empty_cache", self.empty_cache)
        monkeypatch.setattr(torch.cuda, "set_per_process_memory_fraction", self.set_fraction)
        mine = None if process_mib is None else process_mib * MIB
        monkeypatch.setattr(nvml, "process_used_bytes", lambda h, pid: mine)
        used = None if device_used_mib is None else device_used_mib * MIB
        monkeypatch.setattr(nvml, "used_bytes", lambda h: used)

    def empty_cache(self):
        if self.after_empty is not None:
            self.reserved = self.after_empty * MIB

    def set_fraction(self, fraction, device=None):
        self.fraction = fraction


def test_the_budget_caps_the_allocator_at_what_the_card_has_left_beside_the_process(monkeypatch):
    import torch

    from suite.worker import cap_allocator

    card = _Card(monkeypatch, reserved_mib=2, process_mib=514)  # a fresh context: 512 MiB outside the allocator
    budget = cap_allocator("cuda", 8, object(), None)
    assert budget["measured_by"] == "nvml-process" and budget["outside_allocator_mib"] == 512
    assert card.fraction == pytest.approx((8 * 1024 - 512) / (80 * 1024))
    # where the driver will not say per process: the device's growth since before the context
    _Card(monkeypatch, reserved_mib=2, device_used_mib=1000 + 2 + 700)
    assert cap_allocator("cuda", 8, object(), 1000 * MIB)["outside_allocator_mib"] == 700
    _Card(monkeypatch, reserved_mib=2)
    assert cap_allocator("cuda", 8, None, None)["measured_by"] == "assumed"
    # beside other probe servers the device's growth is theirs too: only the per-process figure will do
    _Card(monkeypatch, reserved_mib=2, device_used_mib=1000 + 2 + 700)
    with pytest.raises(RuntimeError, match="--probe-servers 1"):
        cap_allocator("cuda", 8, object(), 1000 * MIB, shared=True)
    _Card(monkeypatch, reserved_mib=2, process_mib=514)
    assert cap_allocator("cuda", 8, object(), None, shared=True)["outside_allocator_mib"] == 512
    # after a warm-up: 7.8 GiB cached, 3 GiB of it live; the cache goes back, and what is live fits
    card = _Card(monkeypatch, reserved_mib=7800, process_mib=7800 + 900, after_empty_mib=3000)
    assert cap_allocator("cuda", 8, object(), None)["allocator_cap_mib"] == 8 * 1024 - 900
    assert card.reserved == 3000 * MIB
    _Card(monkeypatch, reserved_mib=7800, process_mib=7800 + 900, after_empty_mib=7600)  # live weights too large
    with pytest.raises(torch.cuda.OutOfMemoryError, match="7600 MiB in torch's allocator and 900 MiB outside"):
        cap_allocator("cuda", 8, object(), None)
