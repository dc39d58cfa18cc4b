"""The client: submit runs and follow them on the log (docs/client.md).

``from taskplane import Client`` is the public spelling; this package holds the sync
client (``client``), the asyncio one (``async_client``) and their private parts.
"""

from taskplane.client.async_client import AsyncClient, AsyncRunHandle
from taskplane.client.client import Client, RunHandle

__all__ = ["AsyncClient", "AsyncRunHandle", "Client", "RunHandle"]
