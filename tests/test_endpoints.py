"""The five seed schemas, field for field (shared/seeds; fal-protocol.md §14.1), and the plan mapping."""

from __future__ import annotations

import types
import typing

import pytest
from pydantic import BaseModel

from stillreel.endpoints import mapping
from stillreel.endpoints.registry import ENDPOINTS, InputError, Plan
from stillreel.engines.base import Capabilities

V1S = "fal-ai/kling-video/v1/standard/image-to-video"
V1P = "fal-ai/kling-video/v1/pro/image-to-video"
V2 = "fal-ai/kling-video/v2/master/image-to-video"
V25 = "fal-ai/kling-video/v2.5-turbo/standard/image-to-video"
O3 = "fal-ai/kling-video/o3/standard/image-to-video"
NEG = "blur, distort, and low quality"

EXPECTED = {
    V1S: (["prompt", "image_url"], {"duration": "5", "negative_prompt": NEG, "cfg_scale": 0.5, "tail_image_url": None,
                                    "static_mask_url": None, "dynamic_masks": None, "aspect_ratio": None,
                                    "camera_control": None}),
    V1P: (["prompt", "image_url"], {"duration": "5", "aspect_ratio": "16:9"}),
    V2: (["prompt", "image_url"], {"duration": "5", "negative_prompt": NEG, "cfg_scale": 0.5}),
    V25: (["prompt", "image_url"], {"duration": "5", "negative_prompt": NEG, "cfg_scale": 0.5}),
    O3: (["image_url"], {"prompt": None, "end_image_url": None, "duration": "5", "generate_audio": False,
                         "multi_prompt": None, "shot_type": "customize"}),
}


@pytest.mark.parametrize("endpoint_id", EXPECTED)
def test_fields_required_and_defaults(endpoint_id):
    required, defaults = EXPECTED[endpoint_id]
    schema = ENDPOINTS[endpoint_id].input_model.model_json_schema()
    assert schema.get("required", []) == required
    assert set(schema["properties"]) == set(required) | set(defaults)
    for field, value in defaults.items():
        assert schema["properties"][field].get("default") == value, field


def test_enums_and_ranges():
    props = ENDPOINTS[V1S].input_model.model_json_schema()["properties"]
    assert props["duration"]["enum"] == ["5", "10"]
    assert props["cfg_scale"]["minimum"] == 0 and props["cfg_scale"]["maximum"] == 1
    assert props["camera_control"]["anyOf"][0]["enum"] == ["down_back", "forward_up", "right_turn_forward", "left_turn_forward"]
    assert props["aspect_ratio"]["anyOf"][0]["enum"] == ["16:9", "9:16", "1:1"]
    o3 = ENDPOINTS[O3].input_model.model_json_schema()
    assert o3["properties"]["duration"]["enum"] == [str(n) for n in range(3, 16)]
    assert o3["$defs"]["MultiPromptElement"]["properties"]["duration"]["enum"] == [str(n) for n in range(1, 16)]


def test_seed_examples_validate_and_plan():
    v1 = ENDPOINTS[V1S].plan({
        "prompt": "Snowflakes fall as a car moves forward along the road.", "image_url": "https://x/in.jpeg",
        "duration": "5", "negative_prompt": NEG, "cfg_scale": 0.5, "static_mask_url": "https://x/static.png",
        "dynamic_masks": [{"mask_url": "https://x/dyn.png", "trajectories": [{"x": 279, "y": 219}, {"x": 417, "y": 65}]}],
    })
    assert v1.seconds == 5 and v1.static_mask_url and v1.dynamic_masks[0].trajectory == ((279, 219), (417, 65))
    o3 = ENDPOINTS[O3].plan({"prompt": "walks", "image_url": "https://x/a.png", "end_image_url": "https://x/b.png",
                             "duration": "10", "generate_audio": False, "multi_prompt": None, "shot_type": "customize"})
    assert o3.shots == (("walks", 10),) and o3.end_image_url == "https://x/b.png"
    assert Plan.from_json(o3.to_json()) == o3


def test_plan_json_has_every_nested_part_as_plain_data():
    import dataclasses
    import json

    from stillreel.endpoints.request_plan import PlannedElement, PlannedMask

    plan = Plan("https://x/a.png", (("walks", 5),), 5, dynamic_masks=(PlannedMask("https://x/m.png", ((1.0, 2.0),)),),
                elements=(PlannedElement("https://x/f.png", ("https://x/r.png",), "v1"),), voices=("v1",),
                advanced_camera=("zoom", 3.0))
    data = plan.to_json()
    assert data == dataclasses.asdict(plan)  # what it was made with before (deep copies, same values)
    assert Plan.from_json(json.loads(json.dumps(data))) == plan


def test_numbers_for_durations_are_accepted():
    assert ENDPOINTS[V2].plan({"prompt": "p", "image_url": "u", "duration": 10}).seconds == 10


def test_same_input_same_seed_different_input_different_seed():
    a = ENDPOINTS[V2].plan({"prompt": "p", "image_url": "u"})
    b = ENDPOINTS[V2].plan({"prompt": "p", "image_url": "u", "duration": "5"})
    c = ENDPOINTS[V2].plan({"prompt": "q", "image_url": "u"})
    assert a.seed == b.seed != c.seed


def test_multi_shot_durations_must_add_up():
    with pytest.raises(InputError) as err:
        ENDPOINTS[O3].plan({"image_url": "u", "duration": "5", "multi_prompt": [{"prompt": "a"}, {"prompt": "b"}]})
    assert err.value.detail[0]["loc"] == ["body", "multi_prompt"] and "10 s" in err.value.detail[0]["msg"]


def _refused(endpoint_id, payload, caps):
    endpoint = ENDPOINTS[endpoint_id]
    try:
        endpoint.admit(endpoint.plan(payload), caps)
    except InputError as exc:
        return sorted((d["loc"][1], d["ctx"]["feature"]) for d in exc.detail if d["type"] == "feature_not_supported")
    return []


def test_unsupported_features_name_fal_fields():
    o3 = {"image_url": "u", "prompt": "p", "generate_audio": True, "end_image_url": "e"}
    assert _refused(O3, o3, Capabilities(end_frame=True)) == [("generate_audio", "audio")]
    v1 = {"prompt": "p", "image_url": "u", "tail_image_url": "t", "camera_control": "down_back"}
    assert _refused(V1S, v1, Capabilities()) == [("camera_control", "camera"), ("tail_image_url", "end_frame")]
    assert _refused(V1S, v1, Capabilities(end_frame=True, camera=True)) == []


def test_a_default_the_engine_cannot_honour_is_dropped_not_refused():
    v26 = ENDPOINTS["fal-ai/kling-video/v2.6/pro/image-to-video"]
    plan = v26.plan({"prompt": "p", "start_image_url": "u"})
    assert plan.audio is True and "audio" not in plan.explicit  # generate_audio defaults true on v2.6
    admitted = v26.admit(plan, Capabilities())
    assert admitted.audio is False and admitted.dropped == ("audio",)
    with pytest.raises(InputError) as err:
        v26.admit(v26.plan({"prompt": "p", "start_image_url": "u", "generate_audio": True}), Capabilities())
    assert err.value.detail[0]["loc"] == ["body", "generate_audio"]
    assert err.value.detail[0]["type"] == "feature_not_supported"
    assert v26.admit(plan, Capabilities(audio=True)).audio is True


def test_prices():
    assert ENDPOINTS[V2].price.for_clip(10) == 2.80
    assert ENDPOINTS[V1S].price.for_clip(5) == 0.225
    assert ENDPOINTS[O3].price.for_clip(5, audio=True) == 0.56
    assert ENDPOINTS[V1P].price.for_clip(5) is None


# -- errors found after the claim name a field the caller's endpoint has ---------------------------


def _fal_type(annotation):
    """``list[X] | None`` → ``list[X]``; ``Model | None`` → ``Model``."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if typing.get_origin(annotation) in (typing.Union, types.UnionType) and len(args) == 1 else annotation


def _walk(model: type[BaseModel], fal_loc: list):
    """The type ``fal_loc`` (``["body", field, index, field, …]``) lands on in ``model``, or an
    AssertionError naming the first step that does not exist."""
    here = model
    for step in fal_loc[1:]:
        here = _fal_type(here)
        if isinstance(step, int):
            assert typing.get_origin(here) is list, (fal_loc, step, here)
            here = typing.get_args(here)[0]
        else:
            assert isinstance(here, type) and issubclass(here, BaseModel) and step in here.model_fields, (fal_loc, step)
            here = here.model_fields[step].annotation
    return _fal_type(here)


def _post_claim_locs(endpoint) -> list[tuple]:
    """Every normalized loc an error after the claim can carry on ``endpoint``, from the mapping:
    each attribute the endpoint maps (with an index where its fal type is a list), each nested
    attribute of its lists (``dynamic_masks.N.mask``, ``elements.N.references.J`` …), and the
    ones every plan has (``shots``, ``prompt``, ``seconds``), however the endpoint spells them."""
    locs: list[tuple] = []
    for attr in sorted({*endpoint.fields, "shots", "prompt", "seconds"}):
        locs.append((attr,))
        name = endpoint.fields.get(attr)
        if name is None or typing.get_origin(_walk(endpoint.input_model, ["body", name])) is not list:
            continue
        locs.append((attr, 1))
        item = _walk(endpoint.input_model, ["body", name, 1])
        for fal_sub, sub in mapping.NESTED.get(attr, {}).items():
            if not (isinstance(item, type) and issubclass(item, BaseModel) and fal_sub in item.model_fields):
                continue  # this endpoint's items have no such part (o1's elements take no video)
            locs.append((attr, 1, sub))
            if typing.get_origin(_fal_type(item.model_fields[fal_sub].annotation)) is list:
                locs.append((attr, 1, sub, 2))
    return locs


@pytest.mark.parametrize("endpoint_id", sorted(ENDPOINTS))
def test_every_error_after_the_claim_names_a_field_of_the_endpoint(endpoint_id):
    endpoint = ENDPOINTS[endpoint_id]
    locs = _post_claim_locs(endpoint)
    for loc in locs:
        translated = endpoint.fal_loc(loc)
        _walk(endpoint.input_model, translated)  # raises when a step names no field
        assert translated[1] in endpoint.input_model.model_fields, (loc, translated)
    if "dynamic_masks" in endpoint.fields:
        assert ("dynamic_masks", 1, "trajectory", 2) in locs and ("dynamic_masks", 1, "mask") in locs
    if endpoint.fields.get("reference_images") == "image_urls":
        assert ("elements", 1, "references", 2) in locs and ("elements", 1, "frontal") in locs


def test_the_post_claim_table_covers_what_resolve_fetches():
    # Every URL resolve fetches, on the endpoints that have it, is in the table above.
    seen = {loc for endpoint in ENDPOINTS.values() for loc in _post_claim_locs(endpoint)}
    for loc in [("start_image",), ("end_image",), ("static_mask",), ("dynamic_masks", 1, "mask"),
                ("dynamic_masks", 1, "trajectory", 2), ("elements", 1, "frontal"), ("elements", 1, "references", 2),
                ("reference_images", 1), ("shots", 1, "prompt")]:
        assert loc in seen, loc
