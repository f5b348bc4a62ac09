"""Uses the plugin's fixture (skipped unless pytest --stillreel)."""

import test_app


def test_clip_despite_status_faults(stillreel_twin):
    with stillreel_twin.faults("status=0.3,result=0.3,seed=11") as injected:
        test_app.test_clip_from_uploaded_image()
    assert sum(injected.values()) > 0
