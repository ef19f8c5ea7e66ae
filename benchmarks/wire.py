"""Wire codec speed: IPv4/TCP build and parse rates and checksum throughput.

Every figure is printed next to a baseline measured in the same run on the same machine:
a textbook checksum that sums unpacked 16-bit words, and ``struct.pack``/``unpack`` of the bare
40-byte IPv4+TCP header with no checksum at all (the floor any codec pays).

    python benchmarks/wire.py            # about five seconds
"""

from __future__ import annotations

import os
import struct
import sys
import time
from collections.abc import Callable
from functools import partial

from smolmix_core.wire import (
    PROTO_TCP,
    TcpFlags,
    TcpHeader,
    TcpOptions,
    emit_ip,
    emit_tcp,
    internet_checksum,
    parse_ip,
    parse_tcp,
)

SRC = bytes([10, 0, 0, 1])
DST = bytes([10, 0, 0, 2])
BUDGET = float(os.environ.get("WIRE_BENCH_SECONDS", "0.25"))  # per measurement

_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIHHHH")


def rate(function: Callable[[], object]) -> float:
    """Calls per second of ``function``, best of three timed batches of about ``BUDGET`` seconds."""
    batch = 1
    while True:
        start = time.perf_counter()
        for _ in range(batch):
            function()
        elapsed = time.perf_counter() - start
        if elapsed > BUDGET / 10:
            break
        batch *= 4
    batch = max(1, int(batch * (BUDGET / 3) / elapsed))
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(batch):
            function()
        best = min(best, time.perf_counter() - start)
    return batch / best


def word_sum_checksum(data: bytes) -> int:
    """The naive baseline: unpack every 16-bit word and add them up."""
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def naive_build(payload: bytes) -> bytes:
    """Baseline builder: struct headers, checksums by summing words."""
    segment = _TCP.pack(40000, 443, 1, 2, (5 << 12) | 0x18, 65535, 0, 0) + payload
    pseudo = SRC + DST + struct.pack("!BBH", 0, PROTO_TCP, len(segment))
    checksum = word_sum_checksum(pseudo + segment)
    segment = segment[:16] + checksum.to_bytes(2, "big") + segment[18:]
    header = _IP.pack(0x45, 0, 20 + len(segment), 0, 0x4000, 64, PROTO_TCP, 0, SRC, DST)
    header = header[:10] + word_sum_checksum(header).to_bytes(2, "big") + header[12:]
    return header + segment


def naive_parse(packet: bytes) -> tuple[int, bytes]:
    """Baseline parser: struct headers, both checksums verified by summing words."""
    fields = _IP.unpack_from(packet)
    header_length = (fields[0] & 0x0F) * 4
    if word_sum_checksum(packet[:header_length]):
        raise ValueError("ip checksum")
    segment = packet[header_length : fields[2]]
    pseudo = fields[8] + fields[9] + struct.pack("!BBH", 0, fields[6], len(segment))
    if word_sum_checksum(pseudo + segment):
        raise ValueError("tcp checksum")
    tcp = _TCP.unpack_from(segment)
    return tcp[0], segment[(tcp[4] >> 12) * 4 :]


def bare_pack(payload: bytes) -> bytes:
    return (
        _IP.pack(0x45, 0, 40 + len(payload), 0, 0x4000, 64, 6, 0, SRC, DST)
        + _TCP.pack(40000, 443, 1, 2, 0x5018, 65535, 0, 0)
        + payload
    )


def bare_unpack(packet: bytes) -> tuple[int, bytes]:
    _IP.unpack_from(packet)
    tcp = _TCP.unpack_from(packet, 20)
    return tcp[0], packet[40:]


def main() -> None:
    print(f"smolmix wire codecs — Python {sys.version.split()[0]}, {BUDGET:.2f} s per figure")
    data_header = TcpHeader(40000, 443, 1, 2, int(TcpFlags.ACK | TcpFlags.PSH), 65535)
    ts_header = TcpHeader(
        40000, 443, 1, 2, int(TcpFlags.ACK), 65535, options=TcpOptions(timestamp=(12345, 67890))
    )

    def ours_build(header: TcpHeader, payload: bytes) -> Callable[[], bytes]:
        return lambda: emit_ip(SRC, DST, PROTO_TCP, emit_tcp(header, payload, SRC, DST))

    def ours_parse(packet: bytes, verify: bool = True) -> Callable[[], object]:
        def run() -> object:
            parsed = parse_ip(packet, verify_checksum=verify)
            return parse_tcp(parsed.payload, parsed.src, parsed.dst, verify_checksum=verify)

        return run

    row("IPv4/TCP, packets/s", "ours", "word-sum", "bare struct", "vs word-sum")
    for size in (0, 1400):
        payload = os.urandom(size)
        packet = emit_ip(SRC, DST, PROTO_TCP, emit_tcp(data_header, payload, SRC, DST))
        assert naive_build(payload) == packet, "baseline and ours disagree"
        assert naive_parse(packet) == (40000, payload)
        build = rate(ours_build(data_header, payload))
        build_naive = rate(partial(naive_build, payload))
        build_bare = rate(partial(bare_pack, payload))
        row(
            f"build {size} B payload",
            count(build),
            count(build_naive),
            count(build_bare),
            ratio(build, build_naive),
        )
        parse = rate(ours_parse(packet))
        parse_naive = rate(partial(naive_parse, packet))
        parse_bare = rate(partial(bare_unpack, packet))
        row(
            f"parse+verify {size} B payload",
            count(parse),
            count(parse_naive),
            count(parse_bare),
            ratio(parse, parse_naive),
        )
        row(f"parse, checksums not verified, {size} B", count(rate(ours_parse(packet, verify=False))))
        if size:
            row(
                "  payload MB/s: build, parse+verify",
                f"{build * size / 1e6:.1f}",
                f"{parse * size / 1e6:.1f}",
            )
    ts_payload = os.urandom(1400)
    ts_packet = emit_ip(SRC, DST, PROTO_TCP, emit_tcp(ts_header, ts_payload, SRC, DST))
    row("build 1400 B, timestamps option", count(rate(ours_build(ts_header, ts_payload))))
    row("parse+verify 1400 B, timestamps option", count(rate(ours_parse(ts_packet))))

    print()
    row("Internet checksum, MB/s", "ours", "word-sum", "", "ratio")
    for size in (40, 1460, 65535):
        data = os.urandom(size)
        assert internet_checksum(data) == word_sum_checksum(data)
        ours = rate(partial(internet_checksum, data)) * size / 1e6
        naive = rate(partial(word_sum_checksum, data)) * size / 1e6
        row(f"{size} bytes", f"{ours:,.1f}", f"{naive:,.1f}", "", ratio(ours, naive))


def row(label: str, *cells: str) -> None:
    print(f"{label:42}" + "".join(f"{cell:>13}" for cell in cells))


def count(value: float) -> str:
    return f"{value:,.0f}"


def ratio(ours: float, baseline: float) -> str:
    return f"{ours / baseline:.2f}x"


if __name__ == "__main__":
    main()
