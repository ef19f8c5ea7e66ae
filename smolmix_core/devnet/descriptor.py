"""The devnet descriptor: a JSON document that tells clients where everything is.

It lists the topology (mix nodes and gateways with their keys and addresses), each gateway's
nym-client API URL, the client settings the devnet was started with, and a slot for the exit's
Recipient (filled once an IPR exit runs on the devnet). ``smolmix devnet up`` writes it;
clients in other processes load it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from smolmix_core.errors import RecipientError, TopologyError
from smolmix_core.mixnet.base58 import b58decode, b58encode
from smolmix_core.mixnet.client import SphinxClientConfig
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.topology import Gateway, Topology

FORMAT = "smolmix-devnet"
VERSION = 1
WARNING = "local development network: it runs on one host and gives no anonymity"


@dataclass(frozen=True)
class DevnetDescriptor:
    topology: Topology
    api_urls: Mapping[bytes, str] = field(default_factory=dict)
    """Gateway identity → that gateway's nym-client websocket API URL."""
    exit: Recipient | None = None
    fast: bool = True
    average_packet_delay: float = 0.0
    message_sending_average_delay: float = 0.020
    loop_cover_traffic_average_delay: float = 0.200

    def api_url(self, gateway: Gateway | bytes | int = 0) -> str:
        """The API URL of ``gateway``: a descriptor, an identity or an index (the first by default)."""
        if isinstance(gateway, int):
            gateway = self.topology.gateways[gateway]
        identity = gateway.identity if isinstance(gateway, Gateway) else gateway
        try:
            return self.api_urls[identity]
        except KeyError:
            raise TopologyError(f"no nym-client API listed for gateway {b58encode(identity)}") from None

    def with_exit(self, exit_recipient: Recipient | None) -> DevnetDescriptor:
        return replace(self, exit=exit_recipient)

    def client_config(self) -> SphinxClientConfig:
        """Client settings that match how the devnet was started."""
        if self.fast:
            return SphinxClientConfig.fast()
        base = SphinxClientConfig()
        core = replace(
            base.core,
            average_packet_delay=self.average_packet_delay,
            average_ack_delay=self.average_packet_delay,
        )
        return replace(
            base,
            message_sending_average_delay=self.message_sending_average_delay,
            loop_cover_traffic_average_delay=self.loop_cover_traffic_average_delay,
            core=core,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": VERSION,
            "warning": WARNING,
            "topology": self.topology.to_dict(),
            "api": {b58encode(identity): url for identity, url in self.api_urls.items()},
            "exit": None if self.exit is None else str(self.exit),
            "client": {
                "fast": self.fast,
                "average_packet_delay": self.average_packet_delay,
                "message_sending_average_delay": self.message_sending_average_delay,
                "loop_cover_traffic_average_delay": self.loop_cover_traffic_average_delay,
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DevnetDescriptor:
        if not isinstance(data, Mapping) or data.get("format") != FORMAT:
            raise TopologyError(f"not a {FORMAT} descriptor")
        if data.get("version") != VERSION:
            raise TopologyError(f"unsupported devnet descriptor version {data.get('version')!r}")
        topology = Topology.from_dict(data["topology"])
        try:
            api_urls = {
                b58decode(identity): str(url) for identity, url in dict(data.get("api") or {}).items()
            }
            exit_text = data.get("exit")
            exit_recipient = None if exit_text is None else Recipient.parse(exit_text)
            client = dict(data.get("client") or {})
            return cls(
                topology,
                api_urls,
                exit_recipient,
                fast=bool(client.get("fast", True)),
                average_packet_delay=float(client.get("average_packet_delay", 0.0)),
                message_sending_average_delay=float(client.get("message_sending_average_delay", 0.020)),
                loop_cover_traffic_average_delay=float(client.get("loop_cover_traffic_average_delay", 0.200)),
            )
        except (RecipientError, TypeError, ValueError) as exc:
            raise TopologyError(f"malformed devnet descriptor: {exc}") from None

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str) -> DevnetDescriptor:
        try:
            return cls.from_dict(json.loads(text))
        except json.JSONDecodeError as exc:
            raise TopologyError(f"devnet descriptor is not JSON: {exc}") from None

    def save(self, path: str | Path) -> None:
        """Write atomically (to a temporary name, then rename) so readers never see half a file."""
        target = Path(path)
        temporary = target.with_name(target.name + ".tmp")
        temporary.write_text(self.to_json() + "\n")
        temporary.replace(target)

    @classmethod
    def load(cls, path: str | Path) -> DevnetDescriptor:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise TopologyError(f"cannot read devnet descriptor {path}: {exc}") from None
        return cls.from_json(text)


__all__ = ["DevnetDescriptor"]
