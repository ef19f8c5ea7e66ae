"""smolmix for HTTP and WebSocket code: httpcore backend, httpx transports, websockets connector, CLI."""

__all__: list[str] = []
