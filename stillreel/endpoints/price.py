"""What fal charges per endpoint (stillreel itself bills nothing; shown for comparison)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    """fal's published price; all ``None``: fal publishes none we know of ("not published")."""

    per_second: float | None = None
    first_5s: float | None = None  # a 5 s clip; extra seconds at per_second
    audio_per_second: float | None = None

    def for_clip(self, seconds: int, audio: bool = False) -> float | None:
        if self.first_5s is not None:
            return round(self.first_5s + max(0, seconds - 5) * (self.per_second or 0), 4)
        rate = self.audio_per_second if audio and self.audio_per_second else self.per_second
        return None if rate is None else round(rate * seconds, 4)

    def describe(self) -> str:
        if self.first_5s is not None:
            return f"${self.first_5s:.2f} per 5 s clip, ${self.per_second:.3f} per extra second"
        if self.per_second is None:
            return "not published by fal"
        text = f"${self.per_second:.3f} per second"
        if self.audio_per_second:
            text += f" (${self.audio_per_second:.3f} with audio)"
        return text
