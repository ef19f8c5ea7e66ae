"""PcapWriter and PcapTap produce classic pcap files that other tools read back byte for byte."""

from __future__ import annotations

import io
import shutil
import signal
import struct
import subprocess
import sys
import time
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


def _records(data: bytes) -> list[bytes]:
    """The packets of a pcap file; asserts the file ends exactly at a record boundary."""
    packets, offset = [], 24
    while offset < len(data):
        assert offset + 16 <= len(data), "a record header was cut short"
        _seconds, _micros, captured, _length = struct.unpack_from("<IIII", data, offset)
        offset += 16
        assert offset + captured <= len(data), "a record was cut short"
        packets.append(data[offset : offset + captured])
        offset += captured
    return packets


def test_every_packet_is_in_the_file_as_soon_as_it_is_written(tmp_path: Path) -> None:
    path = tmp_path / "live.pcap"
    writer = PcapWriter(path)
    assert path.stat().st_size == 24  # the global header goes out at once
    for size in (60, 1500, 40):
        writer.write(b"E" + bytes(size - 1))
        assert _records(path.read_bytes())[-1] == b"E" + bytes(size - 1)
    assert len(_records(path.read_bytes())) == 3
    writer.close()


def test_a_capture_survives_sigterm_of_the_demo(tmp_path: Path) -> None:
    """The demo is killed mid-transfer (no cleanup runs): every packet written so far is in the
    file, whole, and the file ends at a record boundary."""
    path = tmp_path / "killed.pcap"
    command = [sys.executable, "-m", "smolmix_http.cli", "demo", "--size", "200", "--delay", "5"]
    process = subprocess.Popen([*command, "--pcap", str(path)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not path.exists() or path.stat().st_size < 300_000:
            assert process.poll() is None, "the demo ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == -signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    packets = _records(path.read_bytes())
    assert len(packets) > 200
    assert all(packet[0] >> 4 == 4 for packet in packets)
