"""The ``SmolmixError`` hierarchy.

Every error smolmix raises on purpose is a ``SmolmixError``. Where a built-in exception already
names the situation (``ConnectionRefusedError``, ``TimeoutError``, ``ValueError``) the smolmix
class also derives from it, so code written against sockets keeps working; the httpx/httpcore and
websockets boundaries map these to their own exception types and keep the original as
``__cause__``.

Areas add their specific subclasses here, next to their parents, so that there is one place to
read the whole tree.
"""

from __future__ import annotations

import socket


class SmolmixError(Exception):
    """Base of every error smolmix raises deliberately."""


# --- wire codecs ----------------------------------------------------------------------------


class MalformedPacket(SmolmixError, ValueError):
    """Bytes that do not parse as the packet they claim to be (truncated, bad length, bad checksum)."""


class ChecksumError(MalformedPacket):
    """A header or payload checksum did not verify."""


# --- netstack ---------------------------------------------------------------------------------


class NetstackError(SmolmixError, OSError):
    """A failure of the userspace TCP/IP stack or one of its sockets."""


class ConnectionRefused(NetstackError, ConnectionRefusedError):
    """The peer answered a SYN with RST, or a UDP datagram with ICMP port unreachable."""


class ConnectionReset(NetstackError, ConnectionResetError):
    """The peer reset an established connection."""


class ConnectionAborted(NetstackError, ConnectionAbortedError):
    """This side aborted the connection (``abort()``, stack shut down, too many retransmissions)."""


class ConnectionTimedOut(NetstackError, TimeoutError):
    """Retransmissions or keepalive probes went unanswered for the configured time."""


class HostUnreachable(NetstackError):
    """ICMP destination unreachable (other than port unreachable) or no route to the address."""


class ConnectionProhibited(HostUnreachable):
    """ICMP "administratively prohibited": a filter or the exit's policy refused the destination."""


class AddressInUse(NetstackError):
    """The requested local address and port are already bound."""


class StackClosed(NetstackError):
    """The stack (or the device under it) has shut down."""


class ConnectionClosed(NetstackError, BrokenPipeError):
    """Sending on a connection whose sending side this end already shut down or closed."""


class AddressNotAvailable(NetstackError):
    """Binding to an address the interface does not own (or a family it has no address for)."""


class MessageTooLarge(NetstackError):
    """A datagram larger than the path allows; the stack never fragments IP packets."""


class DeviceError(NetstackError):
    """A device could not be opened or failed while running."""


class RequestClosed(NetstackError):
    """A deferred connection request was already answered, expired, or lost its listener."""


# --- mixnet -----------------------------------------------------------------------------------


class MixnetError(SmolmixError):
    """A failure in the mixnet layer (packets, messages, clients, nodes)."""


class SphinxError(MixnetError, ValueError):
    """A Sphinx packet that cannot be processed: wrong size, bad group element, unknown flag."""


class MacMismatch(SphinxError):
    """The header MAC (gamma) did not verify at this hop."""


class ReplayDetected(SphinxError):
    """This hop has already processed a packet with the same replay tag."""


class FragmentError(MixnetError, ValueError):
    """A fragment or fragment header that cannot be parsed or reassembled."""


class MessageError(MixnetError, ValueError):
    """A NymMessage (plain, repliable, reply) or its padding is malformed."""


class RecipientError(MixnetError, ValueError):
    """A Recipient address (96 bytes or ``id.enc@gateway`` text) that does not parse."""


class RoutingAddressError(MixnetError, ValueError):
    """A NymNodeRoutingAddress (``ip_version ‖ port ‖ ip``) that does not parse or fit."""


class Base58Error(MixnetError, ValueError):
    """Text that is not base58, or longer than any encoding of the bytes it may stand for."""


class SurbError(MixnetError):
    """Reply SURBs missing, exhausted, expired or malformed."""


class MixnetQueueFull(MixnetError):
    """The client core holds as many unsent or unacknowledged fragments as it may; wait and retry."""


class MalformedSurb(SurbError, SphinxError):
    """Bytes that are not a Sphinx SURB of the expected version (wrong length, bad key material)."""


class MixnetClientClosed(MixnetError):
    """The mixnet client was closed or lost its gateway for good."""


class GatewayError(MixnetError):
    """The gateway refused the client link (handshake or authentication failure)."""


class ApiError(MixnetError):
    """A nym-client websocket API error response, or a malformed API frame."""

    def __init__(self, kind: int, message: str) -> None:
        super().__init__(f"{message} (kind 0x{kind:02x})")
        self.kind = kind
        self.message = message


class TopologyError(MixnetError, ValueError):
    """A topology or devnet descriptor that is incomplete or inconsistent."""


# --- mixnet network: links, nodes, gateways, devnet -----------------------------------------


class LinkError(MixnetError, ConnectionError):
    """A websocket, gateway or node link failed, was refused or closed."""


class WebSocketClosed(LinkError):
    """The websocket connection is closed; ``code`` and ``reason`` come from the close frame."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"websocket closed (code {code}{': ' + reason if reason else ''})")
        self.code = code
        self.reason = reason


class FramingError(MixnetError, ValueError):
    """A node-to-node frame header (packet version, size tag, packet type) that does not parse."""


class DevnetError(MixnetError):
    """The local devnet could not start, or one of its nodes failed."""


# --- dns ----------------------------------------------------------------------------------------


class DnsError(SmolmixError):
    """A DNS message could not be handled or a name could not be resolved."""


class MalformedDnsMessage(DnsError, ValueError):
    """Bytes that do not parse as a DNS message (truncated, bad pointer, oversized name or label)."""


class InvalidDomainName(DnsError, ValueError):
    """Text that is not a domain name DNS can carry (empty or over-long label, name over 255 bytes,
    IDNA failure); like ``socket.getaddrinfo`` raising ``UnicodeError`` for such a name."""


class ResolutionError(DnsError, socket.gaierror):
    """A lookup that ended without addresses; a ``socket.gaierror`` (an ``OSError``) with the errno
    ``getaddrinfo`` would give, so socket-style code and httpcore (``ConnectError``) handle it."""

    eai: int = socket.EAI_FAIL

    def __init__(self, message: str, name: str | None = None) -> None:
        super().__init__(self.eai, message)
        self.name = name

    def __reduce__(self) -> tuple[type[ResolutionError], tuple[str, str | None]]:
        return type(self), (self.strerror or "", self.name)


class NameNotFound(ResolutionError):
    """The name does not exist (NXDOMAIN), or has no address of the family asked for (NODATA)."""

    eai = socket.EAI_NONAME


class DnsServerFailure(ResolutionError):
    """Every server failed: SERVFAIL, REFUSED, NOTIMP, FORMERR, an unreachable port, or a broken
    TCP exchange (``EAI_AGAIN``: worth retrying later)."""

    eai = socket.EAI_AGAIN


class DnsTimeout(ResolutionError, TimeoutError):
    """No server answered within the timeout on any attempt (``EAI_AGAIN``; also a ``TimeoutError``,
    so httpcore reports a ``ConnectTimeout``)."""

    eai = socket.EAI_AGAIN
