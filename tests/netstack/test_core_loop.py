"""Two NetCores back to back over a simulated link (plain loop, virtual time, no anyio)."""

from __future__ import annotations

import hashlib
import random

import pytest
from tcp_harness import Link, Transfer, make_core

from smolmix_core.netstack.core import NetCore


def _payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


def _assert_clean(core: NetCore) -> None:
    stats = core.stats()
    assert stats["internal_errors"] == 0
    assert stats["malformed"] == 0


@pytest.mark.parametrize(("client_ip", "server_ip"), [("10.0.0.1", "10.0.0.2"), ("fd00::1", "fd00::2")])
def test_lossless_transfer_both_ways_and_clean_close(client_ip: str, server_ip: str) -> None:
    link = Link(make_core("10.0.0.1", "fd00::1", seed=1), make_core("10.0.0.2", "fd00::2", seed=2))
    up, down = _payload(300_000, 1), _payload(200_000, 2)
    transfer = Transfer(link, server_ip, up, down)
    assert transfer.client.local[0] == client_ip
    assert link.run_until(transfer.done, limit=120)
    assert hashlib.sha256(transfer.got_up).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(transfer.got_down).digest() == hashlib.sha256(down).digest()
    assert link.a.stats()["tcp_retransmits"] == 0
    assert transfer.client.state == "TIME-WAIT"
    link.run_until(lambda: transfer.client.state == "CLOSED", limit=200)
    assert transfer.client.state == "CLOSED"
    assert link.a.stats()["tcp_sockets"] == 0
    assert link.b.stats()["tcp_sockets"] == 0
    _assert_clean(link.a)
    _assert_clean(link.b)


@pytest.mark.parametrize(("seed", "batch"), [(1, False), (2, False), (3, False), (4, True), (5, True)])
def test_lossy_reordering_link_delivers_every_byte_in_order(seed: int, batch: bool) -> None:
    link = Link(
        make_core(seed=seed, min_rto=0.05),
        make_core("10.0.0.2", "fd00::2", seed=seed + 100, min_rto=0.05),
        loss=0.03,
        reorder=0.1,
        duplicate=0.02,
        seed=seed,
        batch=batch,
    )
    up, down = _payload(400_000, seed), _payload(150_000, seed + 1)
    transfer = Transfer(link, "10.0.0.2", up, down)
    assert link.run_until(transfer.done, limit=600)
    assert hashlib.sha256(transfer.got_up).digest() == hashlib.sha256(up).digest()
    assert hashlib.sha256(transfer.got_down).digest() == hashlib.sha256(down).digest()
    stats = link.a.stats()
    assert stats["tcp_retransmits"] > 0
    assert stats["tcp_fast_retransmits"] > 0
    _assert_clean(link.a)
    _assert_clean(link.b)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_reordering_path_causes_few_spurious_retransmissions(seed: int) -> None:
    link = Link(
        make_core(seed=seed),
        make_core("10.0.0.2", "fd00::2", seed=seed + 100),
        reorder=0.3,
        delay=0.02,
        seed=seed,
    )
    up = _payload(1_000_000, seed)
    transfer = Transfer(link, "10.0.0.2", up, b"")
    assert link.run_until(transfer.done, limit=600)
    assert hashlib.sha256(transfer.got_up).digest() == hashlib.sha256(up).digest()
    stats = link.a.stats()
    assert stats["tcp_retransmits"] < 0.04 * len(up) / 1448
    assert stats["tcp_spurious_recoveries"] >= 1
    assert link.b.stats()["tcp_paws_rejected"] == 0
    assert stats["tcp_paws_rejected"] == 0
