"""The pytest plugin's fixture, run by tests/test_twin.py as ``pytest --stillreel [--stillreel-auth]``."""

import os

import httpx

STATUS = "/queue/fal-ai/kling-video/requests/00000000-0000-0000-0000-000000000000/status"


def _pattern(twin, n=40):
    """Which of n status polls were faulted (True) — a 404 is the unfaulted answer."""
    with httpx.Client(base_url=twin.url, headers={"Authorization": f"Key {twin.key}"}) as http:
        return [http.get(STATUS).status_code != 404 for _ in range(n)]


def test_faults_block_is_seeded_by_its_own_spec(stillreel_twin):
    with stillreel_twin.faults("status=0.5,seed=3"):
        first = _pattern(stillreel_twin)
    _pattern(stillreel_twin, 7)  # requests between the blocks must not shift the second block's draws
    with stillreel_twin.faults("status=0.5,seed=3"):
        again = _pattern(stillreel_twin)
    with stillreel_twin.faults("status=0.5,seed=4"):
        other = _pattern(stillreel_twin)
    assert any(first) and not all(first)
    assert again == first and other != first


def test_faults_block_counts_only_its_own_faults(stillreel_twin):
    with stillreel_twin.faults("status=1,seed=1") as injected:
        _pattern(stillreel_twin, 3)
    assert sum(injected.values()) == 3
    with stillreel_twin.faults("status=0,seed=1") as injected:
        _pattern(stillreel_twin, 3)
    assert sum(injected.values()) == 0


def test_key_is_the_one_fal_client_sends(stillreel_twin):
    assert stillreel_twin.key and os.environ["FAL_KEY"] == stillreel_twin.key
    token = httpx.post(f"{stillreel_twin.url}/storage/auth/token",
                       headers={"Authorization": f"Key {stillreel_twin.key}"})
    assert token.status_code == 200, token.text
    if os.environ.get("EXPECT_AUTH") == "1":
        assert ":" in stillreel_twin.key
        assert httpx.post(f"{stillreel_twin.url}/storage/auth/token").status_code == 401
    else:
        assert stillreel_twin.key == "stillreel"
