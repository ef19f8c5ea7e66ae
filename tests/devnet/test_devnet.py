"""The devnet: descriptors, bad input on every port, and the ``smolmix devnet`` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest

from smolmix_core.devnet import Devnet, DevnetDescriptor, check_devnet
from smolmix_core.errors import TopologyError
from smolmix_core.mixnet.api_codec import (
    ReceivedResponse,
    SelfAddressRequest,
    SelfAddressResponse,
    SendAnonymousRequest,
    decode_response,
    encode_request,
)
from smolmix_core.mixnet.client import SphinxClient
from smolmix_core.mixnet.framing import encode_frame
from smolmix_core.mixnet.recipient import Recipient
from smolmix_core.mixnet.ws import WebSocket, ws_connect

pytestmark = pytest.mark.anyio


async def test_descriptor_is_json_and_round_trips() -> None:
    async with Devnet.start(layers=3, nodes_per_layer=2, gateways=3, seed=31) as net:
        data = net.descriptor()
        text = json.dumps(data)
        loaded = DevnetDescriptor.from_json(text)
        assert loaded.to_dict() == data
        assert [len(layer) for layer in loaded.topology.layers] == [2, 2, 2]
        assert len(loaded.topology.gateways) == 3
        assert data["exit"] is None
        assert set(loaded.api_urls) == {gateway.identity for gateway in loaded.topology.gateways}
        exit_recipient = Recipient(os.urandom(32), os.urandom(32), loaded.topology.gateways[0].identity)
        with_exit = DevnetDescriptor.from_dict(loaded.with_exit(exit_recipient).to_dict())
        assert with_exit.exit == exit_recipient
        # a client in another process would do this: load the descriptor and connect
        async with SphinxClient.connect(loaded.topology, config=loaded.client_config()) as client:
            await client.send(client.address, b"loaded")
            with anyio.fail_after(20):
                assert (await client.receive()).data == b"loaded"
        assert all(status.ok for status in await check_devnet(loaded))
    for bad in ("[]", "{}", '{"format": "smolmix-devnet", "version": 99}', "nope"):
        with pytest.raises(TopologyError):
            DevnetDescriptor.from_json(bad)


async def test_garbage_on_every_port_and_every_node_keeps_serving() -> None:
    async with Devnet.start(seed=32) as net:
        alice = await net.client(0)
        bob = await net.client(1)
        endpoints = [server.address for server in (*net.mixes, *net.gateways)]
        endpoints += [(gateway.host, gateway.client_port) for gateway in net.gateways]
        endpoints += [(api.host, api.port) for api in net.api_servers]
        for host, port in endpoints:
            for junk in (
                os.urandom(3000),
                b"\x08\x01\x00\x00" + os.urandom(500),
                encode_frame(os.urandom(386)),
            ):
                stream = await anyio.connect_tcp(host, port)
                await stream.send(junk)
                await stream.aclose()
        # replay a whole valid frame at layer 1 and corrupt one in flight: both are dropped
        with anyio.fail_after(20):
            for index in range(3):
                await alice.send(bob.address, bytes([index]) * 3000)
                assert (await bob.receive()).data == bytes([index]) * 3000
        stats = net.stats()
        for mix in net.mixes:
            counters = stats[mix.name]
            assert counters.get("dropped_bad_framing", 0) + counters.get("dropped_bad_mac", 0) >= 2, counters
        assert all(stats[gateway.name].get("client_handshake_failures", 0) >= 2 for gateway in net.gateways)
        assert all(api.stats().get("handshake_failures", 0) >= 2 for api in net.api_servers)


def smolmix(*args: str) -> list[str]:
    return [sys.executable, "-m", "smolmix_http.cli", *args]


def wait_for_file(path: Path, process: subprocess.Popen[str], within: float = 60.0) -> None:
    deadline = time.monotonic() + within
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"devnet up exited early: {process.communicate()}")
        if time.monotonic() > deadline:
            raise AssertionError("devnet up wrote no descriptor")
        time.sleep(0.1)


async def exchange_through_the_api(descriptor: DevnetDescriptor) -> bytes:
    """An application on each gateway's API sends one message across the devnet."""
    app = await ws_connect(descriptor.api_url(0))
    peer = await ws_connect(descriptor.api_url(1))
    with anyio.fail_after(30):
        await peer.send(encode_request(SelfAddressRequest()))
        answer = decode_response(await binary(peer))
        assert isinstance(answer, SelfAddressResponse)
        await app.send(encode_request(SendAnonymousRequest(answer.recipient, b"across processes", 2)))
        received = decode_response(await binary(peer))
    await app.aclose()
    await peer.aclose()
    assert isinstance(received, ReceivedResponse)
    return received.data


async def binary(websocket: WebSocket) -> bytes:
    message = await websocket.receive()
    assert isinstance(message, bytes)
    return message


@pytest.mark.parametrize("processes", [False, True], ids=["in-process", "one-process-per-node"])
def test_cli_devnet_up_status_and_sigterm(tmp_path: Path, processes: bool) -> None:
    descriptor_path = tmp_path / "devnet.json"
    command = smolmix("devnet", "up", "--descriptor", str(descriptor_path))
    if processes:
        command.append("--processes")
    up = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_for_file(descriptor_path, up)
        status = subprocess.run(
            smolmix("devnet", "status", str(descriptor_path)), capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert "devnet OK" in status.stdout
        assert status.stdout.count("up  ") == 7  # 3 mixes, 2 gateways, 2 APIs
        descriptor = DevnetDescriptor.load(descriptor_path)
        assert anyio.run(exchange_through_the_api, descriptor) == b"across processes"
    finally:
        up.send_signal(signal.SIGTERM)
        stdout, stderr = up.communicate(timeout=30)
    assert up.returncode == 0, stderr
    lines = stdout.splitlines()
    assert sum(line.startswith("mix-l") for line in lines) == 3
    assert sum(line.startswith("gateway-") for line in lines) == 2
    assert "devnet stopped" in lines[-1]
    assert not descriptor_path.exists()
    # after the stop, status reports the nodes down
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps(descriptor.to_dict()))
    after = subprocess.run(
        smolmix("devnet", "status", "--timeout", "1", str(stale)), capture_output=True, text=True, timeout=60
    )
    assert after.returncode == 1
    assert "DOWN" in after.stdout


def test_status_of_a_missing_file_fails(tmp_path: Path) -> None:
    result = subprocess.run(
        smolmix("devnet", "status", str(tmp_path / "none.json")), capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "cannot read" in result.stderr


def test_children_stop_when_the_parent_dies(tmp_path: Path) -> None:
    descriptor_path = tmp_path / "devnet.json"
    up = subprocess.Popen(
        smolmix("devnet", "up", "--processes", "--descriptor", str(descriptor_path)),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not descriptor_path.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert descriptor_path.exists()
        children = _children_of(up.pid)
        assert len(children) == 5
    finally:
        up.kill()
        up.wait(timeout=10)
    deadline = time.monotonic() + 20
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in children)


def _children_of(pid: int) -> list[int]:
    children = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(entry.name))
    return children


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
