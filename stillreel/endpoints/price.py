"""What fal charges per endpoint (stillreel itself bills nothing; shown for comparison).

The figures are fal's model pages as recorded in ``shared/reference/fal-protocol.md`` §14.2; an id
whose page we have no (or only contradictory) copies of stays "not published by fal".
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    """fal's published price; all ``None``: fal publishes none we know of ("not published")."""

    per_second: float | None = None
    first_5s: float | None = None  # a 5 s clip; extra seconds at per_second
    audio_per_second: float | None = None
    voice_per_second: float | None = None  # audio with voice control (v3)

    @property
    def published(self) -> bool:
        return self.per_second is not None or self.first_5s is not None

    def for_clip(self, seconds: int, audio: bool = False, voice: bool = False) -> float | None:
        if self.first_5s is not None:
            return round(self.first_5s + max(0, seconds - 5) * (self.per_second or 0), 4)
        rate = self.per_second
        if audio and self.audio_per_second:
            rate = self.audio_per_second
        if voice and self.voice_per_second:
            rate = self.voice_per_second
        return None if rate is None else round(rate * seconds, 4)

    def describe(self) -> str:
        if self.first_5s is not None:
            return f"${self.first_5s:.2f} per 5 s clip, ${self.per_second:.3f} per extra second"
        if self.per_second is None:
            return "not published by fal"
        text = f"${self.per_second:.3f} per second"
        extras = []
        if self.audio_per_second:
            extras.append(f"${self.audio_per_second:.3f} with audio")
        if self.voice_per_second:
            extras.append(f"${self.voice_per_second:.3f} with voice control")
        return text + (f" ({', '.join(extras)})" if extras else "")

    def to_json(self) -> dict:
        """The price as data (the OpenAPI document's ``info.x-fal-pricing``, ``/api/endpoints``).

        ``unit_price`` per ``unit`` as fal's platform pricing API words it: ``video_second``, or
        for a clip-priced id ``clip_5s`` (the 5 s clip) plus ``per_extra_second``.
        """
        if not self.published:
            return {"published": False, "currency": "USD", "text": self.describe()}
        if self.first_5s is not None:
            out = {"unit": "clip_5s", "unit_price": self.first_5s, "per_extra_second": self.per_second}
        else:
            out = {"unit": "video_second", "unit_price": self.per_second}
            for key in ("audio_per_second", "voice_per_second"):
                if getattr(self, key) is not None:
                    out[key] = getattr(self, key)
        return {"published": True, "currency": "USD", **out, "per_clip_5s": self.for_clip(5), "text": self.describe()}
