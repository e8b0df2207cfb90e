"""Annotators and tokens: a token is shown once, only its SHA-256 is stored."""

import hashlib

import pytest
from sqlalchemy import select, update

from labelwise.exceptions import AuthenticationError, InvalidParameterError, PermissionDeniedError
from labelwise.store.annotators import (
    authenticate,
    create_annotator,
    hash_token,
    list_annotators,
    require_admin,
)
from labelwise.store.models import Annotator
from labelwise.store.projects import get_project


def test_only_the_hash_of_a_token_is_stored(db, store):
    pid = store.project(0)
    with db.write() as s:
        annotator, token = create_annotator(
            s, get_project(s, project_id=pid), name="ann", role="admin"
        )
        aid = annotator.id
    assert len(token) >= 40  # 32 random bytes, URL-safe base64
    with db.read() as s:
        stored = s.get_one(Annotator, aid)
        assert stored.token_hash == hashlib.sha256(token.encode()).hexdigest() == hash_token(token)
        row = s.execute(select(Annotator.__table__)).one()  # every column, as stored
    assert not any(isinstance(value, str) and token in value for value in row)


def test_each_annotator_gets_a_different_token(db, store):
    pid = store.project(0)
    with db.write() as s:
        project = get_project(s, project_id=pid)
        tokens = {create_annotator(s, project, name=f"a{i}", role="annotator")[1] for i in range(5)}
    assert len(tokens) == 5


def test_authenticate_accepts_the_token(db, store):
    pid = store.project(0)
    with db.write() as s:
        annotator, token = create_annotator(
            s, get_project(s, project_id=pid), name="ann", role="annotator"
        )
        aid = annotator.id
    with db.read() as s:
        found = authenticate(s, token)
    assert (found.id, found.name, found.role, found.project_id) == (aid, "ann", "annotator", pid)


@pytest.mark.parametrize(
    ("token", "message"),
    [(None, "a token is required"), ("", "a token is required"), ("not-a-token", "unknown token")],
)
def test_authenticate_rejects_missing_or_unknown_tokens(db, store, token, message):
    pid = store.project(0)
    with db.write() as s:
        create_annotator(s, get_project(s, project_id=pid), name="ann", role="admin")
    with db.read() as s, pytest.raises(AuthenticationError, match=message) as info:
        authenticate(s, token)
    assert not isinstance(info.value, PermissionDeniedError)


def test_authenticate_rejects_the_hash_in_place_of_the_token(db, store):
    pid = store.project(0)
    with db.write() as s:
        _, token = create_annotator(s, get_project(s, project_id=pid), name="ann", role="admin")
    with db.read() as s, pytest.raises(AuthenticationError, match="unknown token"):
        authenticate(s, hash_token(token))  # a stolen database yields no usable credential


def test_authenticate_rejects_a_disabled_token(db, store):
    pid = store.project(0)
    with db.write() as s:
        annotator, token = create_annotator(
            s, get_project(s, project_id=pid), name="ann", role="admin"
        )
        aid = annotator.id
    with db.write() as s:
        s.execute(update(Annotator).where(Annotator.id == aid).values(disabled=True))
    with db.read() as s, pytest.raises(AuthenticationError, match="disabled"):
        authenticate(s, token)


def test_the_import_annotator_cannot_log_in(db, store):
    store.project(0)
    from labelwise.store.annotators import system_annotator

    with db.write() as s:
        importer = system_annotator(s, get_project(s, name="demo"))
        assert importer.disabled and importer.token_hint == ""
        assert system_annotator(s, get_project(s, name="demo")).id == importer.id


def test_require_admin():
    require_admin(Annotator(name="boss", role="admin"))
    with pytest.raises(PermissionDeniedError, match="needs an admin token"):
        require_admin(Annotator(name="ann", role="annotator"))


@pytest.mark.parametrize(
    ("name", "role", "message"),
    [
        ("  ", "annotator", "annotator name must be 1 to 100 characters"),
        ("x" * 101, "annotator", "annotator name must be 1 to 100 characters"),
        ("ann", "owner", "role must be one of admin, annotator, got 'owner'"),
        (" first ", "annotator", "an annotator named 'first' already exists"),
    ],
)
def test_create_annotator_refuses_bad_input(db, store, name, role, message):
    pid = store.project(0)
    store.annotator(pid, "first")
    with db.write() as s, pytest.raises(InvalidParameterError, match=message):
        create_annotator(s, get_project(s, project_id=pid), name=name, role=role)


def test_annotator_names_are_per_project(db, store):
    one, two = store.project(0, name="one"), store.project(0, name="two")
    store.annotator(one, "ann")
    store.annotator(two, "ann")
    with db.read() as s:
        assert [a.name for a in list_annotators(s, get_project(s, project_id=two))] == ["ann"]


def test_reissue_gives_a_new_token_and_the_old_one_stops_working(db, store):
    from labelwise.store.annotators import reissue_token

    pid = store.project(0)
    with db.write() as s:
        project = get_project(s, project_id=pid)
        annotator, old = create_annotator(s, project, name="ann", role="annotator")
        aid = annotator.id
    with db.write() as s:  # e.g. restored from an export: disabled, no usable token
        s.execute(update(Annotator).where(Annotator.id == aid).values(disabled=True))
    with db.write() as s:
        again, new = reissue_token(s, get_project(s, project_id=pid), name="ann", role="admin")
        assert again.id == aid
    assert new != old
    with db.read() as s:
        assert authenticate(s, new).id == aid
        assert authenticate(s, new).role == "admin"
        with pytest.raises(AuthenticationError):
            authenticate(s, old)


def test_reissue_refuses_unknown_names_and_the_import_annotator(db, store):
    from labelwise.store.annotators import reissue_token, system_annotator

    pid = store.project(0)
    with db.write() as s:
        project = get_project(s, project_id=pid)
        system_annotator(s, project)
        with pytest.raises(InvalidParameterError, match="no annotator named 'nobody'"):
            reissue_token(s, project, name="nobody")
        with pytest.raises(InvalidParameterError, match="imported labels"):
            reissue_token(s, project, name="import")
        create_annotator(s, project, name="ann", role="annotator")
        with pytest.raises(InvalidParameterError, match="--reissue"):
            create_annotator(s, project, name="ann", role="annotator")
