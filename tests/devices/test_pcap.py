"""PcapWriter and PcapTap produce classic pcap files that other tools read back byte for byte."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path

import anyio
import pytest

from smolmix_core.clock import VirtualClock
from smolmix_core.devices import LINKTYPE_RAW, PcapWriter, memory_link


def _sample_packets() -> list[bytes]:
    s = pytest.importorskip("scapy.all")
    return [
        bytes(s.IP(src="10.0.0.1", dst="10.0.0.2") / s.TCP(sport=1234, dport=80, flags="S")),
        bytes(s.IPv6(src="fd00::1", dst="fd00::2") / s.UDP(sport=53, dport=5353) / b"hello"),
        bytes(s.IP(src="10.0.0.2", dst="10.0.0.1") / s.TCP(sport=80, dport=1234) / (b"x" * 1400)),
    ]


def test_file_reads_back_with_scapy(tmp_path: Path) -> None:
    scapy_all = pytest.importorskip("scapy.all")
    packets = _sample_packets()
    path = tmp_path / "capture.pcap"
    with PcapWriter(path) as writer:
        for i, packet in enumerate(packets):
            writer.write(packet, timestamp=1_700_000_000 + i * 0.25)
    records = scapy_all.rdpcap(str(path))
    assert [bytes(r) for r in records] == packets
    assert [float(r.time) for r in records] == pytest.approx([1_700_000_000 + i * 0.25 for i in range(3)])
    assert records[0].haslayer(scapy_all.TCP)
    assert records[1].haslayer(scapy_all.IPv6)


def test_global_header_is_classic_pcap_linktype_raw() -> None:
    buffer = io.BytesIO()
    writer = PcapWriter(buffer, snaplen=100)
    writer.write(b"E" + b"\0" * 199, timestamp=1.5)
    writer.close()
    data = buffer.getvalue()
    magic, major, minor, _, _, snaplen, linktype = struct.unpack("<IHHiIII", data[:24])
    assert (magic, major, minor, snaplen, linktype) == (0xA1B2C3D4, 2, 4, 100, LINKTYPE_RAW)
    seconds, micros, captured, original = struct.unpack("<IIII", data[24:40])
    assert (seconds, micros, captured, original) == (1, 500_000, 100, 200)
    assert len(data) == 24 + 16 + 100


def test_tcpdump_reads_the_file_if_installed(tmp_path: Path) -> None:
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        pytest.skip("tcpdump is not installed")
    path = tmp_path / "capture.pcap"
    with PcapWriter(path) as writer:
        for packet in _sample_packets():
            writer.write(packet)
    result = subprocess.run([tcpdump, "-nr", str(path)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "10.0.0.1.1234 > 10.0.0.2.80" in result.stdout


@pytest.mark.anyio
async def test_tap_records_both_directions_with_clock_timestamps(tmp_path: Path) -> None:
    scapy_all = pytest.importorskip("scapy.all")
    packets = _sample_packets()
    clock = VirtualClock(start=10.0)
    path = tmp_path / "tap.pcap"
    a, b = memory_link()
    with PcapWriter(path, clock=clock, epoch=1_000.0) as writer:
        tapped = writer.tap(a)
        await tapped.send(packets[0])
        assert await b.receive() == packets[0]
        clock.advance(2.0)
        await b.send(packets[1])
        assert await tapped.receive() == packets[1]
        assert tapped.stats()["captured"] == 2
        await tapped.aclose()
    records = scapy_all.rdpcap(str(path))
    assert [bytes(r) for r in records] == packets[:2]
    assert [float(r.time) for r in records] == pytest.approx([1010.0, 1012.0])
    with pytest.raises(anyio.EndOfStream):
        await b.receive()
