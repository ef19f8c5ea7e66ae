"""Two mixnet clients exchange messages through a local devnet; the answer rides reply SURBs.

By default the devnet runs inside this process. To use one started elsewhere
(``smolmix devnet up --descriptor devnet.json``), pass its descriptor:

    python examples/devnet_messages.py
    python examples/devnet_messages.py --descriptor devnet.json --backend trio

Alice sends Bob an anonymous message with 20 reply SURBs attached (a replier keeps 10 in reserve
for asking for more); Bob sees only a sender tag, never Alice's address, and answers through the
SURBs. The first message also pays for opening the links between nodes.
"""

from __future__ import annotations

import argparse
import time
from contextlib import AsyncExitStack

import anyio

from smolmix_core.devnet import Devnet, DevnetDescriptor
from smolmix_core.mixnet import SphinxClient


async def main(descriptor_path: str | None) -> None:
    async with AsyncExitStack() as stack:
        if descriptor_path is None:
            net = await stack.enter_async_context(Devnet.start(fast=True))
            descriptor = net.describe()
        else:
            descriptor = DevnetDescriptor.load(descriptor_path)
        topology = descriptor.topology
        config = descriptor.client_config()
        alice = await stack.enter_async_context(
            SphinxClient.connect(topology, topology.gateways[0], config=config)
        )
        bob = await stack.enter_async_context(
            SphinxClient.connect(topology, topology.gateways[-1], config=config)
        )
        print(f"alice is {alice.address}")
        print(f"bob   is {bob.address}")

        started = time.perf_counter()
        await alice.send_anonymous(bob.address, b"hello bob, who am I?", reply_surbs=20)
        question = await bob.receive()
        assert question.sender_tag is not None
        print(f"bob got {question.data!r} from sender tag {question.sender_tag.hex()}")

        await bob.reply(question.sender_tag, b"no idea, and that is the point")
        answer = await alice.receive()
        elapsed = (time.perf_counter() - started) * 1000
        print(f"alice got {answer.data!r}; round trip {elapsed:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--descriptor", help="descriptor file written by `smolmix devnet up`")
    parser.add_argument("--backend", choices=("asyncio", "trio"), default="asyncio")
    args = parser.parse_args()
    anyio.run(main, args.descriptor, backend=args.backend)
