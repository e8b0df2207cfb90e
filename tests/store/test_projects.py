"""Projects and their settings: names are unique, settings are checked as a whole."""

import pytest

from labelwise.exceptions import InvalidParameterError, NotFoundError
from labelwise.store.projects import (
    ProjectSettings,
    create_project,
    get_project,
    settings_of,
    update_settings,
)


def test_create_project_stores_labels_and_default_settings(db):
    with db.write() as s:
        project = create_project(s, name="  reviews ", kind="text", labels=[" pos", "neg "])
        pid = project.id
    with db.read() as s:
        project = get_project(s, project_id=pid)
        assert project.name == "reviews"
        assert project.label_set == ["pos", "neg"]
        assert project.current_version_id is None
        assert settings_of(project) == ProjectSettings()
        assert get_project(s, name="reviews").id == pid


def test_duplicate_project_name_is_refused(db):
    with db.write() as s:
        create_project(s, name="reviews", kind="text", labels=["pos", "neg"])
    message = "a project named 'reviews' already exists"
    with pytest.raises(InvalidParameterError, match=message), db.write() as s:
        create_project(s, name=" reviews", kind="text", labels=["a", "b"])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "audio"}, "kind must be one of text, image, tabular, got 'audio'"),
        ({"name": "   "}, "project name must be 1 to 200 characters"),
        ({"name": "x" * 201}, "project name must be 1 to 200 characters"),
        ({"labels": ["only"]}, "at least two labels"),
        ({"labels": ["a", " "]}, "labels must not be empty"),
        ({"labels": ["a", "b", "a "]}, "labels must be unique"),
        ({"labels": ["a", "b" * 201]}, "at most 200 characters"),
    ],
)
def test_create_project_refuses_bad_input(db, kwargs, message):
    args = {"name": "p", "kind": "text", "labels": ["a", "b"], **kwargs}
    with pytest.raises(InvalidParameterError, match=message), db.write() as s:
        create_project(s, **args)
    with db.read() as s, pytest.raises(NotFoundError):
        get_project(s, name="p")


def test_get_project_unknown_raises_not_found(db):
    with db.read() as s:
        with pytest.raises(NotFoundError, match="no project 'nope'"):
            get_project(s, name="nope")
        with pytest.raises(NotFoundError, match="no project 42"):
            get_project(s, project_id=42)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"strategy": "psychic"}, "psychic"),
        ({"model": "oracle"}, "unknown model 'oracle'"),
        ({"retrain_every": 0}, r"retrain_every must be an integer from 1 to 1,000,000, got 0"),
        ({"retrain_every": True}, r"retrain_every must be an integer from 1 to .*, got True"),
        ({"retrain_every": 2**64}, r"retrain_every must be .* got 18446744073709551616"),
        ({"queue_size": 2.5}, r"queue_size must be an integer from 1 to 10,000, got 2.5"),
        (
            {"queue_size": 10**12},
            r"queue_size must be an integer from 1 to 10,000, got 1000000000000",
        ),
        ({"lease_seconds": 4}, r"lease_seconds must be an integer from 5 to 604,800, got 4"),
        ({"lease_seconds": 10**12}, r"lease_seconds must be .* to 604,800, got 1000000000000"),
        ({"seed": -1}, r"seed must be an integer from 0 to 4,294,967,295, got -1"),
        ({"overlap": 1.5}, r"overlap must be a fraction in \[0, 1\], got 1.5"),
        ({"exploration": -0.1}, r"exploration must be a fraction in \[0, 1\], got -0.1"),
        ({"routine": float("nan")}, r"routine must be a fraction in \[0, 1\], got nan"),
        ({"exploration": 0.6, "routine": 0.5}, "exploration \\+ routine must be at most 1"),
        ({"show_guess": "always"}, "show_guess must be one of after, before, never, got 'always'"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(values, message):
    with pytest.raises(InvalidParameterError, match=message):
        ProjectSettings(**values)


def test_settings_from_dict_refuses_unknown_names():
    with pytest.raises(InvalidParameterError, match="unknown setting.*colour.*known:.*overlap"):
        ProjectSettings.from_dict({"colour": "blue"})


def test_settings_round_trip_through_a_dict():
    settings = ProjectSettings(strategy="entropy", retrain_every=7, overlap=0.25, seed=3)
    assert ProjectSettings.from_dict(settings.to_dict()) == settings


def test_update_settings_persists_a_valid_change(db):
    with db.write() as s:
        pid = create_project(s, name="p", kind="text", labels=["a", "b"]).id
    with db.write() as s:
        changed = update_settings(s, get_project(s, project_id=pid), {"retrain_every": 5})
        assert changed.retrain_every == 5
    with db.read() as s:
        settings = settings_of(get_project(s, project_id=pid))
    assert settings.retrain_every == 5
    assert settings.queue_size == ProjectSettings().queue_size  # the rest stays


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"queue_size": 0}, "queue_size must be an integer"),
        ({"routine": 0.9, "exploration": 0.2}, "exploration \\+ routine"),
        ({"nonsense": 1}, "unknown setting.*nonsense"),
    ],
)
def test_update_settings_refuses_bad_changes_and_keeps_the_old_settings(db, changes, message):
    with db.write() as s:
        pid = create_project(
            s, name="p", kind="text", labels=["a", "b"], settings=ProjectSettings(queue_size=9)
        ).id
    with db.write() as s:
        project = get_project(s, project_id=pid)
        with pytest.raises(InvalidParameterError, match=message):
            update_settings(s, project, changes)
        assert settings_of(project).queue_size == 9  # unchanged even before the rollback
    with db.read() as s:
        assert settings_of(get_project(s, project_id=pid)) == ProjectSettings(queue_size=9)


def test_init_leaves_planner_statistics_for_the_items(db_url, tmp_path):
    """Without statistics a fresh items table can be scanned instead of searched by index."""
    from pathlib import Path

    from sqlalchemy import text

    from labelwise.services.setup import init_project

    data = Path(__file__).resolve().parents[1] / "fixtures" / "messages.tsv"
    opened, _ = init_project(tmp_path / "proj", data, db_url=db_url)
    with opened.db.read() as s:
        if opened.db.is_sqlite:
            analyzed = s.execute(text("SELECT tbl FROM sqlite_stat1")).scalars().all()
        else:
            analyzed = (
                s.execute(
                    text("SELECT relname FROM pg_stat_user_tables WHERE last_analyze IS NOT NULL")
                )
                .scalars()
                .all()
            )
    assert "items" in analyzed
    opened.db.dispose()


def test_a_multi_label_project_checks_answers_as_sets_and_keeps_the_setting(db):

    with db.write() as session:
        _multi_label_checks(session)


def _multi_label_checks(session):
    from labelwise.store.projects import answer_value, check_label

    settings = ProjectSettings(multi_label=True)
    project = create_project(
        session, name="ml", kind="text", labels=["insult", "threat"], settings=settings
    )
    assert answer_value(project, ["threat", "insult"]) == "insult;threat"
    assert answer_value(project, "threat") == "threat"
    assert answer_value(project, []) == ""
    check_label(project, "insult;threat")
    check_label(project, "")
    for bad in ("threat;insult", "rude", None):
        with pytest.raises(InvalidParameterError):
            check_label(project, bad)
    with pytest.raises(InvalidParameterError, match="'rude' is not a label"):
        answer_value(project, "insult;rude")
    with pytest.raises(InvalidParameterError, match="fixed"):
        update_settings(session, project, {"multi_label": False})
    with pytest.raises(InvalidParameterError, match="must not contain"):
        create_project(session, name="ml2", kind="text", labels=["a;b", "c"], settings=settings)


def test_a_single_label_project_refuses_a_set_answer(db):
    with db.write() as session:
        _single_label_checks(session)


def _single_label_checks(session):
    from labelwise.store.projects import answer_value

    project = create_project(session, name="sl", kind="text", labels=["neg", "pos"])
    assert answer_value(project, "pos") == "pos"
    with pytest.raises(InvalidParameterError, match="one label per answer"):
        answer_value(project, ["neg", "pos"])
    with pytest.raises(InvalidParameterError, match="fixed"):
        update_settings(session, project, {"multi_label": True})
