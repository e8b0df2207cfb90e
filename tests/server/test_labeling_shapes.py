"""The labeling routes' answers: their shapes in the OpenAPI document, and the same keys as
the page has always read (nothing added for keys a kind of item or reason lacks)."""

from __future__ import annotations

import numpy as np

from labelwise.services.worker import train_once
from labelwise.store import leasing
from labelwise.store.projects import ProjectSettings

ASSIGNMENT = {"item", "why", "guess", "model_version_id", "previous", "lease_expires_at", "lease"}
WITHHELD = {"kind", "strategy", "rank", "neighbors", "far_from_labeled", "duplicates", "summary"}
ANSWER = {
    "label_id",
    "item_id",
    "value",
    "action",
    "replayed",
    "item_labels",
    "reveal",
    "grouped",
    "group_skipped",
}


def test_the_openapi_document_shows_the_labeling_shapes(served):
    s = served
    doc = s.client.get("/api/openapi.json", headers=s.h(s.alice)).json()
    schemas, paths = doc["components"]["schemas"], doc["paths"]

    def answer(path: str) -> str:
        content = paths["/api/projects/{project_id}" + path]["post"]["responses"]["200"]
        return content["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]

    assert answer("/next") == answer("/undo") == "AssignmentOut"
    assert answer("/items/{item_id}/label") == answer("/items/{item_id}/skip") == "SubmitOut"
    assert answer("/release") == "ReleaseOut"
    assert set(schemas["AssignmentOut"]["properties"]) >= ASSIGNMENT
    assert WITHHELD | {"class_split", "drivers"} <= set(schemas["WhyOut"]["properties"])
    assert set(schemas["SubmitOut"]["properties"]) >= ANSWER
    kinds = schemas["Kind"]["enum"]
    assert {"strategy", "overlap", "audit", "fallback", "cold-start", "typical"} <= set(kinds)


def test_the_answers_keep_their_keys(served_with, monkeypatch):
    monkeypatch.setattr(leasing, "_FALLBACK_RNG", np.random.default_rng(3))  # both classes
    s = served_with(ProjectSettings(overlap=0.0, routine=0.0, retrain_every=5))
    h = s.h(s.alice)
    first = s.client.post(s.api("/next"), json={}, headers=h).json()
    assert set(first) == ASSIGNMENT
    assert set(first["item"]) == {"id", "external_id", "kind", "text"}  # no image_url: null
    assert set(first["why"]) == WITHHELD and first["why"]["kind"] == "cold-start"
    # Labels of both classes, then a model: its reasons reveal the guess after each answer.
    for _ in range(12):
        got = s.client.post(s.api("/next"), json={}, headers=h).json()
        value = "spam" if int(got["item"]["external_id"][1:]) % 3 == 0 else "ham"
        body = {"value": value}
        r = s.client.post(s.api(f"/items/{got['item']['id']}/label"), json=body, headers=h)
        assert r.status_code == 200 and set(r.json()) == ANSWER
    assert train_once(s.project.folder, s.project.db).status == "trained"
    got = s.client.post(s.api("/next"), json={}, headers=h).json()
    assert set(got["why"]) == WITHHELD and got["why"]["kind"] == "strategy"
    r = s.client.post(s.api(f"/items/{got['item']['id']}/label"), json={"value": "ham"}, headers=h)
    reveal = r.json()["reveal"]
    assert set(reveal) == {"guess", "why"} and reveal["guess"]["label"] in ("ham", "spam")
    told = {"class_split", "output_kind", "utility", "details"}
    assert WITHHELD | told <= set(reveal["why"]) <= WITHHELD | told | {"drivers", "occlusion"}
    undone = s.client.post(s.api("/undo"), json={}, headers=h).json()
    assert set(undone) == ASSIGNMENT and undone["previous"] == "ham"
    skipped = s.client.post(s.api(f"/items/{got['item']['id']}/skip"), json={}, headers=h).json()
    assert set(skipped) == ANSWER and skipped["reveal"] is None
    assert s.client.post(s.api("/release"), json={}, headers=h).json() == {"released": 0}
