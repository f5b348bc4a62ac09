"""A tiny app that uses the unmodified fal_client, as an app developer would write it for fal."""

import fal_client

ENDPOINT = "fal-ai/kling-video/v2/master/image-to-video"


def make_clip(image_url: str) -> str:
    result = fal_client.subscribe(ENDPOINT, arguments={"prompt": "a slow pan", "image_url": image_url,
                                                       "duration": "5"})
    return result["video"]["url"]


def upload_then_clip(png: bytes) -> str:
    return make_clip(fal_client.upload(png, "image/png"))
