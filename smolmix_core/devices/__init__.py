"""Packet devices: the channels a ``Stack`` exchanges whole IP packets through."""

from smolmix_core.devices.base import Device, PollingDevice
from smolmix_core.devices.faults import FaultInjector
from smolmix_core.devices.memory import MemoryDevice, memory_link
from smolmix_core.devices.pcap import LINKTYPE_RAW, PcapTap, PcapWriter
from smolmix_core.devices.tun import TunDevice

__all__ = [
    "LINKTYPE_RAW",
    "Device",
    "FaultInjector",
    "MemoryDevice",
    "PcapTap",
    "PcapWriter",
    "PollingDevice",
    "TunDevice",
    "memory_link",
]
