"""Uses the plugin's fixture (skipped unless pytest --stillreel)."""

import test_app


# Seed 67 faults the block's first status/result request (and not the next five): a fast machine
# may poll only once, so a seed that faults only a later request would make the count timing-bound.
SPEC = "status=0.3,result=0.3,seed=67"


def test_clip_despite_status_faults(stillreel_twin):
    with stillreel_twin.faults(SPEC) as injected:
        test_app.test_clip_from_uploaded_image()
    assert sum(injected.values()) > 0
