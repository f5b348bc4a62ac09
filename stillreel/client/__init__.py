"""stillreel's own Python client (sync and asyncio), independent of fal-client.

```python
from pathlib import Path
from stillreel.client import Client

client = Client()  # STILLREEL_URL (default http://127.0.0.1:8000) and STILLREEL_KEY
result = client.run("fal-ai/kling-video/v2/master/image-to-video",
                    {"prompt": "waves roll in", "image_url": Path("beach.jpg"), "duration": "5"})
result.video.download("beach.mp4")
```

``submit`` returns a handle (``status``, ``events``, ``wait``, ``result``, ``cancel``); errors
are ``StillreelError`` subclasses carrying the server's ``detail`` and ``error_type``.
"""

from stillreel.client.aio import AsyncClient, AsyncRequestHandle
from stillreel.client.errors import (
    APIError,
    AuthenticationError,
    BadRequest,
    ConnectionFailed,
    NotFound,
    QueueFull,
    RequestCancelled,
    ServerError,
    StillreelError,
    ValidationError,
    WaitTimeout,
)
from stillreel.client.sync import Client, RequestHandle
from stillreel.client.types import COMPLETED, IN_PROGRESS, IN_QUEUE, File, Log, Result, Status

__all__ = [
    "APIError",
    "AsyncClient",
    "AsyncRequestHandle",
    "AuthenticationError",
    "BadRequest",
    "COMPLETED",
    "Client",
    "ConnectionFailed",
    "File",
    "IN_PROGRESS",
    "IN_QUEUE",
    "Log",
    "NotFound",
    "QueueFull",
    "RequestCancelled",
    "RequestHandle",
    "Result",
    "ServerError",
    "Status",
    "StillreelError",
    "ValidationError",
    "WaitTimeout",
]
