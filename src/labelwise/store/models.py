"""The tables of a labeling project (SQLAlchemy 2 ORM).

Anything several annotators, the worker or a restart must see is a row here:

- ``projects``: label set and settings; ``current_version_id`` says which queue is served;
- ``items``: what is labeled (text, tabular fields as JSON, or an image path), its row in the
  feature matrix, how many labels it needs (``target``: 2 for overlap items) and has;
- ``annotators``: name, role and the SHA-256 hash of their token (the token itself is never
  stored);
- ``labels``: append-only history. Undo and relabel add rows that supersede earlier ones
  (``supersedes_id``); ``is_current`` marks each annotator's standing answer per item. Every row
  records who, how long it took, and the model version and reason that queued the item;
- ``leases``: an item handed to an annotator until ``expires_at``;
- ``model_versions``: each fit, with its metrics and the artefact file it wrote;
- ``queue``: the ranked items of a model version, each with the reason it was chosen;
- ``triage_decisions``: new items decided automatically (or routed to experts) by a calibrated
  model, with the policy that decided and whether the item is in the random audit sample.
  An automatic decision is never a label: the labels table holds only people's answers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = [
    "Annotator",
    "Base",
    "Item",
    "Label",
    "Lease",
    "ModelVersion",
    "Project",
    "QueueEntry",
    "SignIn",
    "TriageDecision",
    "utcnow",
]


def utcnow() -> datetime:
    """Now in UTC, without a zone: every timestamp is stored and compared as naive UTC, which
    SQLite and PostgreSQL both order correctly."""
    return datetime.now(UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        list[Any]: JSON,
        datetime: DateTime(),
    }


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    kind: Mapped[str] = mapped_column(String(16))  # text | image | tabular
    label_set: Mapped[list[Any]] = mapped_column(JSON)
    settings: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    current_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id", use_alter=True, name="fk_project_current_version"),
        nullable=True,
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Item(Base):
    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id", name="uq_item_external_id"),
        UniqueConstraint("project_id", "row", name="uq_item_row"),
        Index("ix_items_open", "project_id", "done"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    external_id: Mapped[str] = mapped_column(String(300))
    row: Mapped[int] = mapped_column(Integer)
    content: Mapped[str] = mapped_column(Text)
    meta: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    target: Mapped[int] = mapped_column(Integer, default=1)
    n_labels: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Annotator(Base):
    __tablename__ = "annotators"
    __table_args__ = (UniqueConstraint("project_id", "name", name="uq_annotator_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(16))  # admin | annotator
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_hint: Mapped[str] = mapped_column(String(8))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SignIn(Base):
    """A browser's sign-in (``kind`` "session": the cookie holds its secret) or a one-time
    sign-in link (``kind`` "link"). Only the secret's SHA-256 is stored; a session ends when
    it expires or is signed out (its row deleted), a link when it is used or expires."""

    __tablename__ = "sign_ins"
    __table_args__ = (
        UniqueConstraint("secret_hash", name="uq_sign_in_secret"),
        Index("ix_sign_ins_annotator", "annotator_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(8))  # session | link
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()
    used_at: Mapped[datetime | None] = mapped_column(nullable=True)


class Label(Base):
    __tablename__ = "labels"
    __table_args__ = (
        UniqueConstraint("annotator_id", "request_id", name="uq_label_request"),
        Index("ix_labels_item_current", "item_id", "is_current"),
        Index("ix_labels_annotator_time", "annotator_id", "id"),
        Index("ix_labels_project_action", "project_id", "action", "is_current"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    action: Mapped[str] = mapped_column(String(12))  # label | skip | undo | adjudicate
    #: The answer: a label, or in a multi-label project a label set's canonical string
    #: (:mod:`labelwise.label_sets`; Text since schema 0005, as a set can be long).
    value: Mapped[str | None] = mapped_column(Text, nullable=True)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id"), nullable=True
    )
    reason_kind: Mapped[str | None] = mapped_column(String(16), nullable=True)
    predicted: Mapped[str | None] = mapped_column(Text, nullable=True)
    request_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    supersedes_id: Mapped[int | None] = mapped_column(ForeignKey("labels.id"), nullable=True)
    is_current: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lease(Base):
    __tablename__ = "leases"
    __table_args__ = (
        UniqueConstraint("item_id", "annotator_id", name="uq_lease_item_annotator"),
        Index("ix_leases_annotator", "annotator_id", "expires_at"),
        Index("ix_leases_item", "item_id", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    annotator_id: Mapped[int] = mapped_column(ForeignKey("annotators.id"))
    model_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("model_versions.id"), nullable=True
    )
    reason: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    predicted: Mapped[str | None] = mapped_column(Text, nullable=True)
    expires_at: Mapped[datetime] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    #: Names this grant of the item, not the item: a new one each time the item is leased, so a
    #: request about an earlier grant (a release arriving late) cannot end this one. Ids may be
    #: reused on SQLite once the newest row is deleted, so they cannot serve. Null on leases
    #: made before schema 0003.
    token: Mapped[str | None] = mapped_column(String(32), nullable=True)


class ModelVersion(Base):
    __tablename__ = "model_versions"
    __table_args__ = (UniqueConstraint("project_id", "version", name="uq_model_version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(12))  # ready | failed
    n_labels: Mapped[int] = mapped_column(Integer)
    label_counts: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    strategy: Mapped[str] = mapped_column(String(100))
    model_name: Mapped[str] = mapped_column(String(100))
    artefact: Mapped[str | None] = mapped_column(String(300), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    fit_seconds: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class QueueEntry(Base):
    __tablename__ = "queue"
    __table_args__ = (
        UniqueConstraint("model_version_id", "item_id", name="uq_queue_version_item"),
        Index("ix_queue_rank", "project_id", "model_version_id", "rank"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE")
    )
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    rank: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    utility: Mapped[float | None] = mapped_column(Float, nullable=True)
    predicted: Mapped[str | None] = mapped_column(Text, nullable=True)
    reason: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class TriageDecision(Base):
    """What triage decided for one new item (see :mod:`labelwise.services.triage`)."""

    __tablename__ = "triage_decisions"
    __table_args__ = (
        UniqueConstraint("item_id", name="uq_triage_item"),
        Index("ix_triage_project", "project_id", "accepted", "audit"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    batch: Mapped[str] = mapped_column(String(32))
    accepted: Mapped[bool] = mapped_column(Boolean)
    audit: Mapped[bool] = mapped_column(Boolean, default=False)
    label: Mapped[str] = mapped_column(Text)  # the decision, or the model's guess
    confidence: Mapped[float] = mapped_column(Float)
    policy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
