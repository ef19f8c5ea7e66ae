"""`smolmix demo`, the README's first command: two stacks, one connection, both ways verified."""

from __future__ import annotations

from pathlib import Path

import pytest

from smolmix_http.cli import main


def test_demo_moves_data_both_ways_and_reports(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--size", "1"]) == 0
    out = capsys.readouterr().out
    assert out.count("sha256 ok") == 2
    assert "handshake" in out
    assert "both directions verified" in out


def test_demo_with_loss_on_trio_writes_a_readable_capture(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    scapy_all = pytest.importorskip("scapy.all")
    capture = tmp_path / "demo.pcap"
    assert main(["demo", "--size", "0.5", "--loss", "3", "--backend", "trio", "--pcap", str(capture)]) == 0
    out = capsys.readouterr().out
    assert "both directions verified" in out
    assert " 0 retransmits" not in out
    packets = scapy_all.rdpcap(str(capture))
    assert len(packets) > 500
    assert all(packet.haslayer(scapy_all.TCP) for packet in packets)


def test_demo_rejects_nonsense_flags() -> None:
    with pytest.raises(SystemExit):
        main(["demo", "--loss", "120"])
