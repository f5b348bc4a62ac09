"""Every served id's input schema against fal's own types (shared/reference/kling-catalogue.md).

The expectations are generated from the catalogue by ``scripts/kling_catalogue.py``, not copied by
hand: field names, the required set, enum values and documented defaults.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from stillreel.endpoints.registry import ENDPOINTS, InputError

ROOT = Path(__file__).resolve().parents[1]
CATALOGUE = ROOT.parent / "shared" / "reference" / "kling-catalogue.md"
if not CATALOGUE.exists():
    pytest.skip(f"the Kling catalogue is not at {ROOT.parent / 'shared/reference/kling-catalogue.md'}",
                allow_module_level=True)

_spec = importlib.util.spec_from_file_location("kling_catalogue", ROOT / "scripts" / "kling_catalogue.py")
kling_catalogue = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kling_catalogue)
TABLE = kling_catalogue.parse(CATALOGUE)
SEED_EXTRAS = {"fal-ai/kling-video/v1/standard/image-to-video": {"aspect_ratio", "camera_control"}}
SEED_ONLY = "fal-ai/kling-video/v1/pro/image-to-video"


def _enum(prop: dict) -> list | None:
    if "enum" in prop:
        return prop["enum"]
    for option in prop.get("anyOf", ()):
        if "enum" in option:
            return option["enum"]
    return None


def test_every_catalogue_id_is_served_and_nothing_else():
    assert len(TABLE) == 44
    assert set(ENDPOINTS) == set(TABLE) | {SEED_ONLY}


@pytest.mark.parametrize("endpoint_id", sorted(TABLE))
def test_schema_matches_the_catalogue(endpoint_id):
    expected = TABLE[endpoint_id]
    schema = ENDPOINTS[endpoint_id].input_model.model_json_schema()
    props = schema["properties"]
    assert set(props) - SEED_EXTRAS.get(endpoint_id, set()) == set(expected)
    assert set(schema.get("required", [])) == {name for name, f in expected.items() if f["required"]}
    for name, field in expected.items():
        if field["enum"] is not None:
            assert _enum(props[name]) == field["enum"], name
        if field["default"] is not None:
            assert props[name].get("default") == field["default"], name
        elif not field["required"]:
            assert props[name].get("default") in (None, False), name  # undocumented: absent/off


def test_nested_types_match_the_catalogue():
    types = kling_catalogue.nested(CATALOGUE)
    defs = ENDPOINTS["fal-ai/kling-video/v3/pro/image-to-video"].input_model.model_json_schema()["$defs"]
    for ours, theirs in [("MultiPromptElement", "KlingV3MultiPromptElement"),
                         ("KlingV3ComboElementInput", "KlingV3ComboElementInput")]:
        assert set(defs[ours]["properties"]) == set(types[theirs])
        assert set(defs[ours].get("required", [])) == {n for n, f in types[theirs].items() if f["required"]}
    omni = ENDPOINTS["fal-ai/kling-video/o1/reference-to-video"].input_model.model_json_schema()["$defs"]
    assert set(omni["OmniVideoElementInput"]["properties"]) == set(types["OmniVideoElementInput"])
    camera = ENDPOINTS["fal-ai/kling-video/v1/standard/text-to-video"].input_model.model_json_schema()["$defs"]
    assert camera["CameraControl"]["properties"]["movement_type"]["enum"] == \
        types["CameraControl"]["movement_type"]["enum"]


@pytest.mark.parametrize("endpoint_id", sorted(ENDPOINTS))
def test_minimal_input_plans_and_unknown_fields_are_ignored(endpoint_id):
    endpoint = ENDPOINTS[endpoint_id]
    required = endpoint.input_model.model_json_schema().get("required", [])
    payload = {"prompt": "a walk", "not_a_fal_field": 1}
    for name in required:
        payload.setdefault(name, ["https://x/a.png"] if name.endswith("_urls") else "https://x/a.png")
    plan = endpoint.plan(payload)
    assert plan.endpoint_id == endpoint_id and plan.seconds == 5 and plan.shots[0][0] == "a walk"
    # A submit plans the model it validated (``plan_model``), stores its dump, and a worker, a
    # retry or ``store_files`` plans that dump again: both must give the same plan.
    fuller = {**payload, "duration": "10", "cfg_scale": 0.7, "negative_prompt": "blur", "aspect_ratio": "9:16",
              "generate_audio": True}
    try:
        model = endpoint.validate(fuller)
    except InputError:  # a value this endpoint refuses: the minimal input then
        model = endpoint.validate(payload)
    stored = model.model_dump(mode="json", exclude_unset=True)
    assert endpoint.plan_model(model) == endpoint.plan(stored)


# -- fal's 422 shapes for the new fields -------------------------------------------------------
V26 = "fal-ai/kling-video/v2.6/pro/image-to-video"
V3 = "fal-ai/kling-video/v3/pro/image-to-video"
O1R = "fal-ai/kling-video/o1/reference-to-video"
O3R = "fal-ai/kling-video/o3/standard/reference-to-video"
ELEM = "fal-ai/kling-video/v1.6/pro/elements"


def _detail(endpoint_id, payload):
    with pytest.raises(InputError) as err:
        ENDPOINTS[endpoint_id].plan(payload)
    return err.value.detail[0]


def test_enum_and_range_violations():
    item = _detail(V3, {"prompt": "p", "start_image_url": "u", "shot_type": "auto"})
    assert item["loc"] == ["body", "shot_type"] and item["type"] == "literal_error"
    item = _detail(V3, {"prompt": "p", "start_image_url": "u", "duration": "16"})
    assert item["loc"] == ["body", "duration"] and item["type"] == "literal_error"
    item = _detail(V3, {"prompt": "p", "start_image_url": "u", "cfg_scale": 1.5})
    assert item["loc"] == ["body", "cfg_scale"] and item["type"] == "less_than_equal"


def test_voice_count_and_voice_tokens():
    item = _detail(V26, {"prompt": "p", "start_image_url": "u", "voice_ids": ["a", "b", "c"]})
    assert (item["loc"], item["type"]) == (["body", "voice_ids"], "too_long")
    item = _detail(V26, {"prompt": "<<<voice_2>>> says hi", "start_image_url": "u", "voice_ids": ["a"]})
    assert (item["loc"], item["type"]) == (["body", "prompt"], "voice_reference")
    assert ENDPOINTS[V26].plan({"prompt": "<<<voice_1>>> hi", "start_image_url": "u", "voice_ids": ["a"]}).voices == ("a",)


def test_one_of_prompt_or_multi_prompt_and_shot_totals():
    for payload in ({"start_image_url": "u"},
                    {"start_image_url": "u", "prompt": "p", "multi_prompt": [{"prompt": "a"}]}):
        item = _detail(V3, payload)
        assert (item["loc"], item["type"]) == (["body", "prompt"], "one_of")
    item = _detail(V3, {"start_image_url": "u", "multi_prompt": [{"prompt": "a", "duration": "2"}]})
    assert (item["loc"], item["type"]) == (["body", "multi_prompt"], "shot_durations")
    item = _detail(V3, {"start_image_url": "u", "duration": "7", "multi_prompt": [{"prompt": "a", "duration": "1"}] * 7})
    assert (item["loc"], item["type"]) == (["body", "multi_prompt"], "too_long")


def test_image_totals_and_element_rules():
    element = {"frontal_image_url": "f", "reference_image_urls": ["r"]}
    item = _detail(O1R, {"prompt": "p", "elements": [element] * 4, "image_urls": ["i"] * 4})
    assert (item["loc"], item["type"]) == (["body", "image_urls"], "too_many_images")
    item = _detail(O1R, {"prompt": "p", "elements": [{"frontal_image_url": "f"}]})
    assert item["loc"] == ["body", "elements", 0, "reference_image_urls"]
    item = _detail(O3R, {"prompt": "p", "elements": [{"video_url": "v"}, {"video_url": "w"}]})
    assert item["loc"] == ["body", "elements", 1, "video_url"]
    item = _detail(O3R, {"prompt": "p", "elements": [{"reference_image_urls": ["r"]}]})
    assert item["loc"] == ["body", "elements", 0, "frontal_image_url"]
    item = _detail(ELEM, {"prompt": "p", "input_image_urls": ["a"] * 5})
    assert (item["loc"], item["type"]) == (["body", "input_image_urls"], "too_long")
    plan = ENDPOINTS[O3R].plan({"prompt": "p", "start_image_url": "s", "elements": [element], "image_urls": ["i"]})
    assert plan.elements[0].frontal_url == "f" and plan.reference_image_urls == ("i",)


# -- engine errors found after the claim, reported under each endpoint's own fal names ----------
LOCS = [
    ("fal-ai/kling-video/v1/standard/image-to-video", ("end_image",), ["body", "tail_image_url"]),
    ("fal-ai/kling-video/v1/standard/image-to-video", ("start_image",), ["body", "image_url"]),
    ("fal-ai/kling-video/v1/standard/image-to-video", ("static_mask",), ["body", "static_mask_url"]),
    ("fal-ai/kling-video/v1/standard/image-to-video", ("dynamic_masks", 2, "trajectory"),
     ["body", "dynamic_masks", 2, "trajectories"]),
    ("fal-ai/kling-video/v1/standard/image-to-video", ("dynamic_masks", 1, "mask"), ["body", "dynamic_masks", 1, "mask_url"]),
    ("fal-ai/kling-video/v1/standard/image-to-video", ("guidance",), ["body", "cfg_scale"]),
    ("fal-ai/kling-video/o3/standard/image-to-video", ("end_image",), ["body", "end_image_url"]),
    ("fal-ai/kling-video/o3/standard/image-to-video", ("audio",), ["body", "generate_audio"]),
    ("fal-ai/kling-video/v2.1/pro/image-to-video", ("start_image",), ["body", "image_url"]),
    ("fal-ai/kling-video/v2.6/pro/image-to-video", ("start_image",), ["body", "start_image_url"]),
    ("fal-ai/kling-video/v2.6/pro/image-to-video", ("voices",), ["body", "voice_ids"]),
    ("fal-ai/kling-video/o1/image-to-video", ("start_image",), ["body", "start_image_url"]),
    ("fal-ai/kling-video/o1/reference-to-video", ("reference_images", 1), ["body", "image_urls", 1]),
    ("fal-ai/kling-video/o1/reference-to-video", ("elements", 0, "frontal"), ["body", "elements", 0, "frontal_image_url"]),
    ("fal-ai/kling-video/o3/pro/reference-to-video", ("elements", 1, "references", 2),
     ["body", "elements", 1, "reference_image_urls", 2]),
    ("fal-ai/kling-video/o3/pro/reference-to-video", ("start_image",), ["body", "start_image_url"]),
    ("fal-ai/kling-video/v3/pro/image-to-video", ("elements", 0, "frontal"), ["body", "elements", 0, "frontal_image_url"]),
    ("fal-ai/kling-video/v3/pro/image-to-video", ("shots", 1, "prompt"), ["body", "multi_prompt", 1, "prompt"]),
    ("fal-ai/kling-video/v1.6/pro/elements", ("reference_images", 3), ["body", "input_image_urls", 3]),
    # one prompt stands for every shot: a shot's error is the prompt's
    ("fal-ai/kling-video/v2.1/pro/image-to-video", ("shots", 0, "prompt"), ["body", "prompt"]),
    ("fal-ai/kling-video/v2.1/pro/image-to-video", ("shots",), ["body", "prompt"]),
]


@pytest.mark.parametrize("endpoint_id,loc,expected", LOCS)
def test_engine_locs_translate_to_fal_fields(endpoint_id, loc, expected):
    assert ENDPOINTS[endpoint_id].fal_loc(loc) == expected


def test_every_fetched_field_of_every_endpoint_translates_to_one_of_its_fields():
    for endpoint in ENDPOINTS.values():
        names = set(endpoint.input_model.model_fields)
        for attr in ("start_image", "end_image", "static_mask", "reference_images", "elements", "dynamic_masks"):
            if attr in endpoint.fields:
                assert endpoint.fal_loc((attr,))[1] in names, (endpoint.id, attr)
