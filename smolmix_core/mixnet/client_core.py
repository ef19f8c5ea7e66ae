"""``MixnetClientCore``: the sans-I/O heart of a Nym-style client (what nym-client does inside).

Bytes and ``now`` in, packets and messages out. The anyio driver (``SphinxClient``) calls
``next_real_packet`` on each tick of the Poisson main stream (sending ``make_loop_cover`` when it
returns None), ``make_loop_cover`` on the loop-cover stream, ``packet_sent`` when the gateway took
a packet, ``handle_gateway_payload`` for what the gateway pushes, and ``handle_timeouts`` at
``poll_deadline``.

Inside: messages become padded fragments queued on transmission lanes (General, one per
connection id, Retransmission, ReplySurbRequest, AdditionalReplySurbs); a fragment becomes a
Sphinx packet only when it leaves, so every retransmission gets a fresh route, ephemeral key,
SURB-ACK and delays. Replies ride reply SURBs; when they run short the core asks the original
sender for more, and answers such requests itself.

Bounds (each full-policy is drop-and-count unless stated):

* fragments queued, in flight or waiting for SURBs: ``max_pending_fragments``; a send that would
  exceed it raises ``MixnetQueueFull`` (the caller waits: this is the backpressure signal);
* received messages not yet drained: ``max_received_messages`` (newest dropped);
* reassembly: ``reassembly_max_bytes`` / ``reassembly_max_sets`` / ``reassembly_timeout``;
* reply keys we created: ``max_reply_keys`` (oldest forgotten), each for ``maximum_reply_key_age``;
* SURBs received: ``maximum_reply_surb_storage_threshold`` per tag, ``max_surb_tags`` tags,
  each for ``maximum_reply_surb_age``; sender tags: ``max_sender_tags`` recipients (LRU).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import Enum

from smolmix_core.errors import MixnetQueueFull, SmolmixError, SurbError
from smolmix_core.mixnet.ack import ACK_PLAINTEXT_SIZE, SURB_ACK_SIZE, build_surb_ack, decode_ack
from smolmix_core.mixnet.cover import is_loop_cover, loop_cover_fragment
from smolmix_core.mixnet.encryption import (
    PUBLIC_KEY_SIZE,
    REPLY_KEY_DIGEST_SIZE,
    decrypt_fragment,
    decrypt_reply,
    encrypt_fragment,
    encrypt_reply,
)
from smolmix_core.mixnet.fragment import (
    COVER_FRAGMENT_ID,
    Fragment,
    FragmentIdentifier,
    Reassembler,
    split_into_sets,
)
from smolmix_core.mixnet.interface import ReceivedMessage
from smolmix_core.mixnet.keys import ClientKeys
from smolmix_core.mixnet.message import (
    NymMessage,
    PlainMessage,
    RepliableKind,
    RepliableMessage,
    ReplyData,
    SurbRequest,
    decode_message,
    encode_message,
    pad_message,
    unpad_message,
)
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.reply import ReceivedSurbStore, ReplyKeyStore, ReplySurb, SenderTags
from smolmix_core.mixnet.sphinx import VERSION_258, VERSION_259, PacketSize
from smolmix_core.mixnet.sphinx import build_packet as build_sphinx_packet
from smolmix_core.mixnet.topology import Gateway, Topology, sample_delays

logger = logging.getLogger("smolmix.mixnet")

Lane = int | str | None
"""``None`` is the General lane, an ``int`` a connection id; strings name the internal lanes."""
RETRANSMISSION_LANE = "retransmission"
SURB_REQUEST_LANE = "reply_surb_request"
ADDITIONAL_SURBS_LANE = "additional_reply_surbs"


def check_max_retransmissions(limit: int | None) -> None:
    """``ValueError`` unless ``limit`` is None or a non-negative int (checked before queueing)."""
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
        raise ValueError(f"max_retransmissions must be None or an integer >= 0, got {limit!r}")


@dataclass(frozen=True)
class ClientCoreConfig:
    """Timing, format and bounds of a client core (defaults as in spec §11–§12; seconds)."""

    packet_size: PacketSize = PacketSize.REGULAR
    average_packet_delay: float = 0.015
    average_ack_delay: float = 0.015
    ack_wait_multiplier: float = 1.5
    ack_wait_addition: float = 1.5
    retransmissions: bool = True
    max_retransmissions: int | None = None
    use_legacy_sphinx_format: bool = True
    minimum_reply_surb_storage_threshold: int = 10
    maximum_reply_surb_storage_threshold: int = 200
    minimum_reply_surb_request_size: int = 10
    maximum_reply_surb_request_size: int = 100
    maximum_allowed_reply_surb_request_size: int = 500
    maximum_reply_surb_rerequest_waiting_period: float = 10.0
    maximum_reply_surb_drop_waiting_period: float = 300.0
    maximum_reply_surb_age: float = 12 * 3600.0
    maximum_reply_key_age: float = 24 * 3600.0
    reassembly_timeout: float = 300.0
    reassembly_max_bytes: int = 64 * 1024 * 1024
    reassembly_max_sets: int = 4096
    max_pending_fragments: int = 20_000
    max_received_messages: int = 10_000
    max_reply_keys: int = 100_000
    max_surb_tags: int = 10_000
    max_sender_tags: int = 10_000
    housekeeping_interval: float = 1.0

    def __post_init__(self) -> None:
        if self.packet_size is PacketSize.ACK:
            raise ValueError("the data packet size cannot be the ack size")
        if min(self.average_packet_delay, self.average_ack_delay) < 0:
            raise ValueError("average delays cannot be negative")
        if self.minimum_reply_surb_request_size > self.maximum_reply_surb_request_size:
            raise ValueError("minimum reply SURB request size exceeds the maximum")

    @property
    def sphinx_version(self) -> int:
        return VERSION_258 if self.use_legacy_sphinx_format else VERSION_259

    @property
    def fragment_size(self) -> int:
        """Fragment bytes per packet: plaintext minus the SURB-ACK and the key (or key digest)."""
        return self.packet_size.plaintext_size - SURB_ACK_SIZE - PUBLIC_KEY_SIZE


@dataclass(frozen=True, slots=True)
class OutgoingPacket:
    """A packet for the own gateway to forward: ``first_hop_address`` is the MixPacket address form."""

    first_hop: tuple[str, int]
    first_hop_address: bytes
    packet: bytes
    packet_size: PacketSize
    fragment_id: FragmentIdentifier | None
    is_cover: bool


class _State(Enum):
    QUEUED = "queued"
    WAITING_SURB = "waiting for a reply SURB"
    IN_FLIGHT = "in flight"
    DONE = "done"


@dataclass(eq=False)
class _Job:
    """One fragment from queueing until it is acked or given up."""

    fragment: bytes
    fragment_id: FragmentIdentifier
    lane: Lane
    recipient: Recipient | None = None
    reply_tag: bytes | None = None
    uses_reserve: bool = False
    surb: ReplySurb | None = None
    retransmissions: int = 0
    max_retransmissions: int | None = None
    state: _State = _State.QUEUED
    deadline: float | None = None
    expected_delay: float = 0.0
    since: float = field(default=0.0)


class MixnetClientCore:
    """Sans-I/O client: queues, Sphinx packets, acks and retransmission, reassembly, SURB replies."""

    def __init__(
        self,
        keys: ClientKeys,
        gateway: Gateway,
        topology: Topology,
        config: ClientCoreConfig | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config if config is not None else ClientCoreConfig()
        self._keys = keys
        self._gateway = gateway
        self._topology = topology
        self._rng = rng if rng is not None else random.SystemRandom()
        self.address: Recipient = keys.address(gateway.identity)
        cfg = self.config
        self._lanes: dict[Lane, deque[_Job]] = {}
        self._waiting: dict[bytes, deque[_Job]] = {}
        self._waiting_by_lane: Counter[Lane] = Counter()
        self._unacked: dict[FragmentIdentifier, _Job] = {}
        self._timers: list[tuple[float, int, FragmentIdentifier]] = []
        self._timer_seq = itertools.count()
        self._received: deque[ReceivedMessage] = deque()
        self._reassembler = Reassembler(
            timeout=cfg.reassembly_timeout,
            max_bytes=cfg.reassembly_max_bytes,
            max_sets=cfg.reassembly_max_sets,
        )
        self._reply_keys = ReplyKeyStore(max_age=cfg.maximum_reply_key_age, capacity=cfg.max_reply_keys)
        self._surbs = ReceivedSurbStore(
            reserve=cfg.minimum_reply_surb_storage_threshold,
            max_per_tag=cfg.maximum_reply_surb_storage_threshold,
            min_request=cfg.minimum_reply_surb_request_size,
            max_request=cfg.maximum_reply_surb_request_size,
            max_age=cfg.maximum_reply_surb_age,
            max_tags=cfg.max_surb_tags,
        )
        self._sender_tags = SenderTags(self._rng, capacity=cfg.max_sender_tags)
        self._housekeeping_at: float | None = None
        self._surb_expiry_at: float | None = None
        self._counters: Counter[str] = Counter()
        self._in_flight = 0

    # --- topology --------------------------------------------------------------------------

    @property
    def topology(self) -> Topology:
        return self._topology

    def update_topology(self, topology: Topology) -> None:
        """Routes chosen from now on use ``topology`` (packets already built keep theirs)."""
        topology.gateway(self._gateway.identity)
        self._topology = topology

    # --- sending ---------------------------------------------------------------------------

    def send_plain(
        self,
        recipient: Recipient,
        data: bytes,
        now: float,
        *,
        lane: int | None = None,
        max_retransmissions: int | None = None,
    ) -> None:
        """Queue a Plain message; ``TopologyError`` if the recipient's gateway is unknown.

        ``max_retransmissions`` caps how often each fragment is resent after an ack timeout (0:
        never, as for traffic that recovers on its own, such as TCP); None keeps the client's
        configured policy, which also caps any per-message value.
        """
        check_max_retransmissions(max_retransmissions)
        self._topology.gateway(recipient.gateway)
        raw = encode_message(PlainMessage(bytes(data)))
        self._queue_forward(raw, recipient, lane, now, max_retransmissions)

    def send_anonymous(
        self,
        recipient: Recipient,
        data: bytes,
        now: float,
        *,
        reply_surbs: int,
        lane: int | None = None,
        max_retransmissions: int | None = None,
    ) -> None:
        """Queue a Repliable message carrying ``reply_surbs`` fresh SURBs under our tag for ``recipient``.

        ``SurbError`` outside ``0..maximum_allowed_reply_surb_request_size`` (see ``check_reply_surbs``);
        ``max_retransmissions`` as for ``send_plain``.
        """
        self.check_reply_surbs(reply_surbs)
        check_max_retransmissions(max_retransmissions)
        self._topology.gateway(recipient.gateway)
        tag = self._sender_tags.tag_for(recipient)
        self._send_surbs(
            recipient, tag, RepliableKind.DATA, reply_surbs, bytes(data), lane, now, max_retransmissions
        )

    def check_reply_surbs(self, count: int) -> None:
        """``SurbError`` unless ``0 <= count <= maximum_allowed_reply_surb_request_size``.

        Building SURBs is synchronous work (a Sphinx header each), so one request for 2^32 - 1
        of them would freeze the caller; the bound is the one we apply to others' requests.
        """
        limit = self.config.maximum_allowed_reply_surb_request_size
        if not 0 <= count <= limit:
            raise SurbError(f"reply_surbs must be between 0 and {limit}, got {count}")

    def reply(
        self,
        sender_tag: bytes,
        data: bytes,
        now: float,
        *,
        lane: int | None = None,
        max_retransmissions: int | None = None,
    ) -> None:
        """Answer through the SURBs filed under ``sender_tag``; more are requested when short.

        ``SurbError`` if no SURBs are held for the tag and none are on their way;
        ``max_retransmissions`` as for ``send_plain``.
        """
        check_max_retransmissions(max_retransmissions)
        tag = bytes(sender_tag)
        if self._surbs.available(tag) == 0 and self._surbs.pending_reception(tag) == 0:
            raise SurbError(f"no reply SURBs held or on their way for this sender tag ({tag.hex()})")
        raw = encode_message(ReplyData(bytes(data)))
        jobs = self._fragment_jobs(raw, lane, now, reply_tag=tag, max_retransmissions=max_retransmissions)
        self._wait_for_surbs(tag, jobs)
        self._release_waiting(tag, now)

    def _send_surbs(
        self,
        recipient: Recipient,
        tag: bytes,
        kind: RepliableKind,
        count: int,
        data: bytes,
        lane: Lane,
        now: float,
        max_retransmissions: int | None = None,
    ) -> None:
        legacy = self.config.use_legacy_sphinx_format
        surbs = [self._make_reply_surb() for _ in range(count)]
        message = RepliableMessage(tag, kind, tuple(surb.to_bytes() for surb in surbs), data, legacy)
        self._queue_forward(encode_message(message), recipient, lane, now, max_retransmissions)
        for surb in surbs:
            self._reply_keys.insert(surb.encryption_key, now)
        self._counters["reply_surbs_sent"] += count

    def _make_reply_surb(self) -> ReplySurb:
        route = self._topology.random_route(self._rng, self._gateway.identity)
        return ReplySurb.build(
            route,
            self._keys.identity_key,
            delays_ns=sample_delays(self._rng, self.config.average_packet_delay, len(route)),
            rng=self._rng,
            legacy=self.config.use_legacy_sphinx_format,
        )

    def _queue_forward(
        self, raw: bytes, recipient: Recipient, lane: Lane, now: float, max_retransmissions: int | None = None
    ) -> None:
        jobs = self._fragment_jobs(
            raw, lane, now, recipient=recipient, max_retransmissions=max_retransmissions
        )
        for job in jobs:
            self._lanes.setdefault(lane, deque()).append(job)

    def _fragment_jobs(
        self,
        raw: bytes,
        lane: Lane,
        now: float,
        *,
        recipient: Recipient | None = None,
        reply_tag: bytes | None = None,
        uses_reserve: bool = False,
        max_retransmissions: int | None = None,
    ) -> list[_Job]:
        padded = pad_message(raw, self.config.fragment_size)
        while True:
            fragments = [
                f for group in split_into_sets(padded, self.config.fragment_size, self._rng) for f in group
            ]
            if not any(f.identifier in self._unacked for f in fragments):
                break
        if len(self._unacked) + len(fragments) > self.config.max_pending_fragments:
            raise MixnetQueueFull(
                f"{len(fragments)} more fragments would exceed the bound of "
                f"{self.config.max_pending_fragments} queued or unacknowledged fragments"
            )
        jobs = [
            _Job(
                fragment.to_bytes(),
                fragment.identifier,
                lane,
                recipient=recipient,
                reply_tag=reply_tag,
                uses_reserve=uses_reserve,
                max_retransmissions=max_retransmissions,
                since=now,
            )
            for fragment in fragments
        ]
        for job in jobs:
            self._unacked[job.fragment_id] = job
        self._counters["fragments_queued"] += len(jobs)
        return jobs

    # --- the main stream -------------------------------------------------------------------

    def next_real_packet(self, now: float) -> OutgoingPacket | None:
        """One packet from a uniformly chosen non-empty lane, or None when nothing is queued."""
        while True:
            lanes = [lane for lane, queue in self._lanes.items() if queue]
            if not lanes:
                return None
            lane = lanes[self._rng.randrange(len(lanes))]
            queue = self._lanes[lane]
            job = queue.popleft()
            if not queue:
                del self._lanes[lane]
            if job.state is _State.DONE:
                self._return_surb(job, now)
                continue
            try:
                packet = self._prepare(job)
            except (SmolmixError, ValueError) as exc:
                logger.warning("dropping fragment %s: cannot prepare it (%s)", job.fragment_id, exc)
                self._counters["fragments_unpreparable"] += 1
                self._finish(job)
                continue
            self._set_state(job, _State.IN_FLIGHT)
            # Provisional timer in case the driver never reports the send; packet_sent restarts it.
            self._arm_timer(job, now + 2 * self._ack_timeout(job))
            self._counters["real_packets_prepared"] += 1
            if job.retransmissions:
                self._counters["retransmissions_sent"] += 1
            return packet

    def make_loop_cover(self, now: float) -> OutgoingPacket:
        """A loop cover packet to ourselves, the same size and shape as real traffic."""
        plaintext = loop_cover_fragment(self.config.fragment_size)
        packet, _ = self._prepare_forward(plaintext, COVER_FRAGMENT_ID, self.address, is_cover=True)
        self._counters["cover_packets_prepared"] += 1
        return packet

    def packet_sent(self, packet: OutgoingPacket, now: float) -> None:
        """The gateway took ``packet``: its ack timer (spec §10) starts now."""
        if packet.fragment_id is None:
            return
        job = self._unacked.get(packet.fragment_id)
        if job is not None and job.state is _State.IN_FLIGHT:
            self._arm_timer(job, now + self._ack_timeout(job))

    def _ack_timeout(self, job: _Job) -> float:
        return job.expected_delay * self.config.ack_wait_multiplier + self.config.ack_wait_addition

    def _arm_timer(self, job: _Job, deadline: float) -> None:
        job.deadline = deadline
        heapq.heappush(self._timers, (deadline, next(self._timer_seq), job.fragment_id))

    def _prepare(self, job: _Job) -> OutgoingPacket:
        if job.reply_tag is None:
            assert job.recipient is not None
            packet, expected_delay = self._prepare_forward(job.fragment, job.fragment_id, job.recipient)
        else:
            packet, expected_delay = self._prepare_reply(job)
        job.expected_delay = expected_delay
        return packet

    def _surb_ack(self, fragment_id: FragmentIdentifier) -> tuple[bytes, float]:
        route = self._topology.random_route(self._rng, self._gateway.identity)
        surb_ack = build_surb_ack(
            fragment_id,
            ack_key=self._keys.ack_key,
            route=route,
            destination=self._keys.identity_key,
            delays_ns=sample_delays(self._rng, self.config.average_ack_delay, len(route)),
            rng=self._rng,
            version=self.config.sphinx_version,
        )
        return surb_ack.data, surb_ack.mix_delay

    def _prepare_forward(
        self,
        fragment: bytes,
        fragment_id: FragmentIdentifier,
        recipient: Recipient,
        *,
        is_cover: bool = False,
    ) -> tuple[OutgoingPacket, float]:
        surb_ack, ack_delay = self._surb_ack(fragment_id)
        route = self._topology.random_route(self._rng, recipient.gateway)
        delays = sample_delays(self._rng, self.config.average_packet_delay, len(route))
        size = self.config.packet_size
        packet = build_sphinx_packet(
            [node.route_node for node in route],
            recipient.identity,
            surb_ack + encrypt_fragment(fragment, recipient.encryption_key, self._rng),
            delays_ns=delays,
            payload_size=size.payload_size,
            version=self.config.sphinx_version,
            rng=self._rng,
        )
        first_hop = route[0].routing_address
        outgoing = OutgoingPacket(
            first_hop.address,
            first_hop.to_bytes(),
            packet,
            size,
            None if is_cover else fragment_id,
            is_cover,
        )
        return outgoing, sum(delays[:-1]) / 1e9 + ack_delay

    def _prepare_reply(self, job: _Job) -> tuple[OutgoingPacket, float]:
        surb = job.surb
        if surb is None:
            raise SurbError("reply fragment reached the wire without a SURB")
        job.surb = None
        surb_ack, ack_delay = self._surb_ack(job.fragment_id)
        size = self.config.packet_size
        packet = surb.apply(surb_ack + encrypt_reply(job.fragment, surb.encryption_key), size)
        first_hop = surb.first_hop
        # The SURB's own delays are secret to its creator: assume the configured mean per mix.
        forward_delay = (surb.surb.hops - 1) * self.config.average_packet_delay
        outgoing = OutgoingPacket(
            first_hop.address, first_hop.to_bytes(), packet, size, job.fragment_id, False
        )
        return outgoing, forward_delay + ack_delay

    # --- receiving -------------------------------------------------------------------------

    def handle_gateway_payload(self, data: bytes, now: float) -> None:
        """Take what the gateway pushed: a 21-byte ack or a message packet. Never raises on bad input."""
        try:
            if len(data) == ACK_PLAINTEXT_SIZE:
                self._handle_ack(data)
            elif len(data) in _MESSAGE_SIZES:
                self._handle_packet(bytes(data), now)
            else:
                self._counters["payloads_bad_size"] += 1
        except (SmolmixError, ValueError) as exc:
            logger.debug("dropping malformed gateway payload: %s", exc)
            self._counters["payloads_malformed"] += 1

    def _handle_ack(self, data: bytes) -> None:
        fragment_id = decode_ack(data, self._keys.ack_key)
        if fragment_id == COVER_FRAGMENT_ID:
            self._counters["cover_acks_received"] += 1
            return
        job = self._unacked.get(fragment_id)
        if job is None:
            self._counters["acks_unknown"] += 1
            return
        self._counters["acks_received"] += 1
        self._finish(job)

    def _set_state(self, job: _Job, state: _State) -> None:
        """Every state change goes through here, so the in-flight count is exact."""
        if job.state is _State.IN_FLIGHT:
            self._in_flight -= 1
        if state is _State.IN_FLIGHT:
            self._in_flight += 1
        job.state = state

    def _finish(self, job: _Job) -> None:
        """The fragment is acked or given up: forget it (a copy still queued is skipped later)."""
        self._unacked.pop(job.fragment_id, None)
        if job.state is _State.WAITING_SURB and job.reply_tag is not None:
            waiting = self._waiting.get(job.reply_tag)
            if waiting is not None and job in waiting:
                waiting.remove(job)
                self._forget_waiting(job)
                if not waiting:
                    del self._waiting[job.reply_tag]
        self._set_state(job, _State.DONE)

    def _handle_packet(self, data: bytes, now: float) -> None:
        reply_key = self._reply_keys.pop(data[:REPLY_KEY_DIGEST_SIZE])
        if reply_key is not None:
            plaintext = decrypt_reply(data, reply_key)
            self._counters["reply_packets_received"] += 1
        else:
            plaintext = decrypt_fragment(data, self._keys.diffie_hellman)
        if is_loop_cover(plaintext):
            self._counters["cover_packets_received"] += 1
            return
        fragment = Fragment.from_bytes(plaintext)
        self._counters["fragments_received"] += 1
        padded = self._reassembler.add(fragment, now)
        if padded is not None:
            self._handle_message(decode_message(unpad_message(padded)), now)

    def _handle_message(self, message: NymMessage, now: float) -> None:
        if isinstance(message, PlainMessage | ReplyData):
            self._deliver(ReceivedMessage(message.data))
        elif isinstance(message, RepliableMessage):
            self._store_surbs(message, now)
            if message.kind is RepliableKind.DATA:
                self._deliver(ReceivedMessage(message.data, message.sender_tag))
        else:
            self._answer_surb_request(message, now)

    def _deliver(self, message: ReceivedMessage) -> None:
        if len(self._received) >= self.config.max_received_messages:
            self._counters["messages_dropped_undrained"] += 1
            return
        self._received.append(message)
        self._counters["messages_received"] += 1

    def drain_received(self) -> list[ReceivedMessage]:
        messages = list(self._received)
        self._received.clear()
        return messages

    # --- reply SURBs -----------------------------------------------------------------------

    def _store_surbs(self, message: RepliableMessage, now: float) -> None:
        surbs = []
        for raw in message.reply_surbs:
            try:
                surbs.append(ReplySurb.from_bytes(raw, legacy=message.legacy))
            except SurbError:
                self._counters["reply_surbs_malformed"] += 1
        if not surbs and message.kind is RepliableKind.DATA and not self._surbs.knows(message.sender_tag):
            return
        requested = message.kind is RepliableKind.ADDITIONAL_SURBS
        self._counters["reply_surbs_received"] += self._surbs.insert(
            message.sender_tag, surbs, now, requested=requested
        )
        if self._surb_expiry_at is None:
            self._surb_expiry_at = now + self.config.maximum_reply_surb_age
        self._release_waiting(message.sender_tag, now)

    def _wait_for_surbs(self, tag: bytes, jobs: Iterable[_Job]) -> None:
        waiting = self._waiting.setdefault(tag, deque())
        for job in jobs:
            self._set_state(job, _State.WAITING_SURB)
            waiting.append(job)
            if not job.retransmissions:
                self._waiting_by_lane[job.lane] += 1
        if not waiting:
            del self._waiting[tag]

    def _forget_waiting(self, job: _Job) -> None:
        if not job.retransmissions:
            self._waiting_by_lane[job.lane] -= 1
            if self._waiting_by_lane[job.lane] <= 0:
                del self._waiting_by_lane[job.lane]

    def _release_waiting(self, tag: bytes, now: float) -> None:
        """Give SURBs to waiting fragments (above the reserve), then ask for more if still short."""
        waiting = self._waiting.get(tag)
        while waiting:
            surbs = self._surbs.take(tag, 1, use_reserve=waiting[0].uses_reserve)
            if not surbs:
                break
            job = waiting.popleft()
            self._forget_waiting(job)
            job.surb = surbs[0]
            self._set_state(job, _State.QUEUED)
            lane = RETRANSMISSION_LANE if job.retransmissions else job.lane
            self._lanes.setdefault(lane, deque()).append(job)
        if waiting is not None and not waiting:
            del self._waiting[tag]
        self._maybe_request_surbs(tag, now)
        if tag in self._waiting:
            self._schedule_housekeeping(now)

    def _maybe_request_surbs(self, tag: bytes, now: float) -> None:
        queued = len(self._waiting.get(tag, ()))
        if not self._surbs.should_request(tag, queued):
            return
        amount = self._surbs.request_size(queued)
        surbs = self._surbs.take(tag, 1, use_reserve=True)
        if not surbs:
            self._counters["surb_requests_impossible"] += 1
            return
        request = encode_message(SurbRequest(self.address, amount))
        try:
            jobs = self._fragment_jobs(request, SURB_REQUEST_LANE, now, reply_tag=tag, uses_reserve=True)
        except MixnetQueueFull:
            self._surbs.give_back(tag, surbs, now)
            self._counters["surb_requests_dropped_full"] += 1
            return
        first, *rest = jobs
        first.surb = surbs[0]
        self._lanes.setdefault(SURB_REQUEST_LANE, deque()).append(first)
        self._wait_for_surbs(tag, rest)
        self._surbs.note_request(tag, amount, now)
        self._counters["surb_requests_sent"] += 1
        logger.debug("requesting %d more reply SURBs (%d fragments waiting)", amount, queued)

    def _answer_surb_request(self, request: SurbRequest, now: float) -> None:
        amount = min(request.amount, self.config.maximum_allowed_reply_surb_request_size)
        if amount <= 0:
            return
        try:
            self._topology.gateway(request.recipient.gateway)
            tag = self._sender_tags.tag_for(request.recipient)
            self._send_surbs(
                request.recipient,
                tag,
                RepliableKind.ADDITIONAL_SURBS,
                amount,
                b"",
                ADDITIONAL_SURBS_LANE,
                now,
            )
        except (MixnetQueueFull, SmolmixError) as exc:
            logger.warning("cannot answer a request for %d reply SURBs: %s", amount, exc)
            self._counters["surb_requests_unanswered"] += 1
            return
        self._counters["surb_requests_answered"] += 1

    def _return_surb(self, job: _Job, now: float) -> None:
        if job.surb is not None and job.reply_tag is not None:
            self._surbs.give_back(job.reply_tag, [job.surb], now)
            job.surb = None

    # --- timers ----------------------------------------------------------------------------

    def poll_deadline(self) -> float | None:
        """The earliest time ``handle_timeouts`` has work to do, or None."""
        while self._timers and not self._timer_is_live(self._timers[0]):
            heapq.heappop(self._timers)
        candidates = [
            self._timers[0][0] if self._timers else None,
            self._reassembler.next_deadline(),
            self._reply_keys.next_deadline(),
            self._housekeeping_at,
            self._surb_expiry_at,
        ]
        present = [deadline for deadline in candidates if deadline is not None]
        return min(present) if present else None

    def _timer_is_live(self, entry: tuple[float, int, FragmentIdentifier]) -> bool:
        job = self._unacked.get(entry[2])
        return job is not None and job.state is _State.IN_FLIGHT and job.deadline == entry[0]

    def handle_timeouts(self, now: float) -> None:
        """Retransmit fragments whose ack is overdue and expire what has outlived its bound."""
        while self._timers and self._timers[0][0] <= now:
            entry = heapq.heappop(self._timers)
            if self._timer_is_live(entry):
                self._on_ack_timeout(self._unacked[entry[2]], now)
        self._reassembler.expire(now)
        self._reply_keys.expire(now)
        if self._surb_expiry_at is not None and self._surb_expiry_at <= now:
            self._surbs.expire(now)
            self._surb_expiry_at = self._surbs.next_deadline()
        if self._housekeeping_at is not None and self._housekeeping_at <= now:
            self._housekeeping_at = None
            self._housekeeping(now)

    def _on_ack_timeout(self, job: _Job, now: float) -> None:
        cfg = self.config
        limits = [limit for limit in (cfg.max_retransmissions, job.max_retransmissions) if limit is not None]
        if not cfg.retransmissions or (limits and job.retransmissions >= min(limits)):
            self._counters["fragments_abandoned"] += 1
            self._finish(job)
            return
        job.retransmissions += 1
        self._set_state(job, _State.QUEUED)
        self._counters["ack_timeouts"] += 1
        if job.reply_tag is None:
            self._lanes.setdefault(RETRANSMISSION_LANE, deque()).append(job)
            return
        surbs = self._surbs.take(job.reply_tag, 1, use_reserve=job.uses_reserve)
        if surbs:
            job.surb = surbs[0]
            self._lanes.setdefault(RETRANSMISSION_LANE, deque()).append(job)
        else:
            job.since = now
            self._wait_for_surbs(job.reply_tag, [job])
            self._maybe_request_surbs(job.reply_tag, now)
            self._schedule_housekeeping(now)

    def _schedule_housekeeping(self, now: float) -> None:
        at = now + self.config.housekeeping_interval
        if self._housekeeping_at is None or at < self._housekeeping_at:
            self._housekeeping_at = at

    def _housekeeping(self, now: float) -> None:
        """Expire old SURBs; re-request SURBs for stalled replies, drop those stalled too long."""
        cfg = self.config
        self._surbs.expire(now)
        for tag in list(self._waiting):
            waiting = self._waiting[tag]
            last = max(self._surbs.last_received(tag) or 0.0, min(job.since for job in waiting))
            if now - last > cfg.maximum_reply_surb_drop_waiting_period:
                logger.warning(
                    "dropping %d reply fragments: no reply SURBs arrived for too long", len(waiting)
                )
                self._counters["reply_fragments_dropped_stale"] += len(waiting)
                for job in list(waiting):
                    self._finish(job)
                continue
            last_request = self._surbs.last_request(tag)
            stalled = now - last > cfg.maximum_reply_surb_rerequest_waiting_period
            if stalled and (
                last_request is None or now - last_request > cfg.maximum_reply_surb_rerequest_waiting_period
            ):
                self._surbs.reset_pending(tag)
                self._maybe_request_surbs(tag, now)
        if self._waiting:
            self._schedule_housekeeping(now)

    # --- lanes and introspection -----------------------------------------------------------

    def lane_queue_length(self, lane: Lane) -> int:
        """Fragments still queued on ``lane`` (including replies waiting for SURBs)."""
        return len(self._lanes.get(lane, ())) + self._waiting_by_lane.get(lane, 0)

    def close_lane(self, lane: Lane) -> None:
        """Drop the lane's queued, unsent fragments (a closed connection); retransmissions go on."""
        dropped = 0
        queue = self._lanes.pop(lane, None)
        if queue is not None:
            for job in queue:
                if job.state is not _State.DONE:
                    dropped += 1
                self._return_surb(job, job.since)
                self._finish(job)
        for tag in list(self._waiting):
            for job in [job for job in self._waiting[tag] if job.lane == lane and not job.retransmissions]:
                dropped += 1
                self._finish(job)
        self._counters["fragments_dropped_lane_closed"] += dropped

    @property
    def free_fragment_slots(self) -> int:
        """How many more fragments may be queued before sends raise ``MixnetQueueFull``.

        The bound covers fragments queued, in flight awaiting their ack, and waiting for SURBs.
        """
        return max(0, self.config.max_pending_fragments - len(self._unacked))

    @property
    def packets_in_flight(self) -> int:
        """Fragments sent (or handed to the driver to send) whose ack has not come back yet."""
        return self._in_flight

    @property
    def queued_packets(self) -> int:
        """Fragments waiting to be sent on any lane (including replies waiting for SURBs)."""
        return sum(len(queue) for queue in self._lanes.values()) + sum(self._waiting_by_lane.values())

    def reply_surbs_available(self, sender_tag: bytes) -> int:
        return self._surbs.available(bytes(sender_tag))

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = dict(self._counters)
        stats.update({f"reassembly_{name}": value for name, value in self._reassembler.counters.items()})
        stats.update(
            queued_packets=self.queued_packets,
            unacked_fragments=len(self._unacked),
            packets_in_flight=self._in_flight,
            reassembly_bytes=self._reassembler.held_bytes,
            reply_keys_held=len(self._reply_keys),
            reply_keys_evicted=self._reply_keys.evicted,
            reply_surbs_dropped_full=self._surbs.dropped_full,
            reply_surbs_expired=self._surbs.expired,
            received_undrained=len(self._received),
        )
        return stats


_MESSAGE_SIZES = frozenset(
    size.plaintext_size - SURB_ACK_SIZE for size in PacketSize if size is not PacketSize.ACK
)

__all__ = [
    "ADDITIONAL_SURBS_LANE",
    "RETRANSMISSION_LANE",
    "SURB_REQUEST_LANE",
    "ClientCoreConfig",
    "Lane",
    "MixnetClientCore",
    "OutgoingPacket",
    "check_max_retransmissions",
]
