"""The annotator's loop over HTTP: next item, label, skip, undo, release.

A multi-label project's answer is a set of its labels, sent as a list (``labels``) or as one
string (``value``: the labels joined by ``;``, or a JSON list); answers, guesses and undone
answers come back as lists too (``labels``, ``guess.labels``, ``previous_labels``) beside the
stored form (:mod:`labelwise.label_sets`). A single-label project's requests and answers are
as they always were."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator
from sqlalchemy.orm import Session

from labelwise import label_sets
from labelwise.server.deps import (
    AppState,
    BodyId,
    ItemId,
    LabelName,
    Principal,
    ProjectId,
    State,
    User,
    one_of_value_or_labels,
    project_session,
)
from labelwise.server.views import assignment_view, reveal_view
from labelwise.store import answers, leasing
from labelwise.store import undo as undoing
from labelwise.store.models import Annotator, Project
from labelwise.store.projects import answer_value, settings_of
from labelwise.strategies.reasons import Kind

LeaseToken = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{1,32}$")]

router = APIRouter(prefix="/api/projects/{project_id}", tags=["labeling"])


def _listed(description: str, most: int = 20) -> Any:
    """A list in a request body: empty unless sent, at most ``most`` entries."""
    return Field(default_factory=list, max_length=most, description=description)


class NextRequest(BaseModel):
    exclude: list[BodyId] = _listed("Items the page shows or has prefetched: not handed out again.")
    answering: list[BodyId] = _listed(
        "Items whose answers are on their way: not handed out again, and their "
        "leases kept (they do not count against the items one annotator may hold)."
    )


class LabelRequest(BaseModel):
    value: str | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="The answer: one label; in a multi-label project the set's labels joined "
        "by ';' or as a JSON list ('[]' for none of them).",
    )
    labels: list[LabelName] | None = Field(
        default=None,
        max_length=1000,
        description="A multi-label project's answer as a list of its labels ([] for none of "
        "them). Give value or labels, not both.",
    )
    duration_ms: int | None = Field(default=None, ge=0)
    request_id: str | None = Field(default=None, min_length=1, max_length=64)
    group: list[BodyId] = _listed(
        "Near-duplicates offered with the item that get the same answer.", answers.MAX_GROUP
    )

    @model_validator(mode="after")
    def _one_answer(self) -> LabelRequest:
        one_of_value_or_labels(self.value, self.labels, "answer")
        return self

    def answer(self) -> Any:
        """The answer as sent: the list of labels, else the value."""
        return self.labels if self.labels is not None else self.value


class SkipRequest(BaseModel):
    duration_ms: int | None = Field(default=None, ge=0)
    request_id: str | None = Field(default=None, min_length=1, max_length=64)


class ReleaseRequest(BaseModel):
    leases: list[LeaseToken] = _listed(
        "Lease tokens from /next or /undo: only those grants end, so a release "
        "that arrives late never ends a newer lease on the same item."
    )
    items: list[BodyId] = _listed(
        "Item ids: ends whatever lease you hold on them, even one granted after "
        "this request was sent. Prefer leases."
    )


# ------------------------------------------------------------------------------ responses


class _Shape(BaseModel):
    """A response's documented shape; keys it does not list pass through as they are."""

    model_config = ConfigDict(extra="allow")


class ItemOut(_Shape):
    id: int
    external_id: str | None = None
    kind: str = Field(description="text, image or tabular: which of the content keys is set.")
    text: str | None = Field(default=None, description="A text item's content.")
    fields: dict[str, Any] | None = Field(
        default=None, description="A tabular item's fields by name, in column order."
    )
    image_url: str | None = Field(default=None, description="Where an image item is read.")


class WhyOut(_Shape):
    kind: Kind = Field(description="What chose the item.")
    strategy: str | None = Field(default=None, description="The strategy that ranked it.")
    rank: int | None = Field(default=None, description="Its place in the served queue (0 first).")
    summary: str = Field(description="Why it was chosen, in one sentence.")
    neighbors: list[dict[str, Any]] = Field(
        default_factory=list, description="The nearest labeled items close enough to show."
    )
    far_from_labeled: bool = False
    duplicates: list[dict[str, Any]] = Field(
        default_factory=list,
        description="Open near-duplicates that may be given the same answer (see group).",
    )
    class_split: list[tuple[str, float]] | None = Field(
        default=None,
        description="The model's view, best class first (with the guess only); in a "
        "multi-label project every label's probability in label order, with each label's "
        "threshold in details.thresholds.",
    )
    output_kind: str | None = Field(default=None, description="proba or decision.")
    utility: float | None = None
    details: dict[str, Any] | None = None
    drivers: dict[str, Any] | None = Field(
        default=None, description="Words or fields driving the prediction, with weights."
    )
    occlusion: dict[str, Any] | None = Field(
        default=None, description="An image's occlusion map: what the prediction rests on."
    )


class GuessOut(_Shape):
    label: str | None = Field(default=None, description="The guessed label (single-label).")
    labels: list[str] | None = Field(
        default=None, description="A multi-label project's guessed set ([] for none)."
    )
    confidence: float | None = Field(default=None, description="With probabilities only.")


class AssignmentOut(_Shape):
    item: ItemOut
    why: WhyOut
    guess: GuessOut | None = Field(
        default=None, description="The model's guess, where the project shows it first."
    )
    model_version_id: int | None = None
    previous: str | None = Field(default=None, description="After an undo: the answer taken back.")
    previous_labels: list[str] | None = Field(
        default=None, description="A multi-label project's answer taken back, as a list."
    )
    lease_expires_at: str | None = None
    lease: str | None = Field(default=None, description="The lease token /release takes.")


class RevealOut(_Shape):
    guess: GuessOut | None = None
    why: WhyOut


class SubmitOut(_Shape):
    label_id: int
    item_id: int
    value: str | None = Field(
        default=None, description="The stored answer (a multi-label set: labels joined by ';')."
    )
    labels: list[str] | None = Field(
        default=None, description="A multi-label project's answer as a list ([] for none)."
    )
    action: str = Field(description="label or skip.")
    replayed: bool = Field(description="A repeated request: nothing changed.")
    item_labels: int = Field(description="The item's labels now.")
    reveal: RevealOut | None = Field(
        default=None, description="After a label: the model's guess and why, unless hidden."
    )
    grouped: list[int] = Field(default_factory=list)
    group_skipped: list[int] = Field(default_factory=list)


class ReleaseOut(_Shape):
    released: int


@contextmanager
def _annotating(
    state: AppState, user: Principal, project_id: int, *, durable: bool = True
) -> Iterator[tuple[Session, Project, Annotator]]:
    """A write transaction of the signed-in annotator on their project."""
    with project_session(state, user, project_id, write=True, durable=durable) as opened:
        session, project = opened
        annotator = session.get(Annotator, user.annotator_id)
        assert annotator is not None  # the request was just authenticated as this annotator
        yield session, project, annotator


@router.post(
    "/next",
    response_model=AssignmentOut,
    response_model_exclude_unset=True,
    responses={204: {"description": "nothing left to label"}},
)
def next_item(project_id: ProjectId, body: NextRequest, state: State, user: User) -> Any:
    """The next item for this annotator, leased to them (their unfinished one first)."""
    # Only a lease: no need to wait for the disk.
    with _annotating(state, user, project_id, durable=False) as (session, project, annotator):
        assignment = leasing.next_item(
            session, project, annotator, exclude=body.exclude, answering=body.answering
        )
        if assignment is None:
            return Response(status_code=204)
        return assignment_view(assignment, project, state.folder)


def _answer(
    state: AppState,
    user: Principal,
    project_id: int,
    submit: Callable[[Session, Project, Annotator], answers.SubmitResult],
    *,
    reveal: bool,
) -> dict[str, Any]:
    """Store an answer (``submit``) in one transaction; what it stored, with the reveal (the
    model's guess and why) after a label."""
    with _annotating(state, user, project_id) as (session, project, annotator):
        return _submitted(submit(session, project, annotator), project, reveal=reveal)


def _submitted(result: answers.SubmitResult, project: Project, *, reveal: bool) -> dict[str, Any]:
    label, reason = result.label, result.reason
    out: dict[str, Any] = {
        "label_id": label.id,
        "item_id": result.item.id,
        "value": label.value,
        "action": label.action,
        "replayed": result.replayed,
        "item_labels": result.item.n_labels,
        "reveal": (
            reveal_view(reason, project, label.predicted) if reveal and reason is not None else None
        ),
        "grouped": list(result.grouped),
        "group_skipped": list(result.group_skipped),
    }
    if label.action == "label" and settings_of(project).multi_label:
        out["labels"] = label_sets.decode(label.value)
    return out


@router.post("/items/{item_id}/label", response_model=SubmitOut, response_model_exclude_unset=True)
def label_item(
    project_id: ProjectId, item_id: ItemId, body: LabelRequest, state: State, user: User
) -> dict[str, Any]:
    """Store an answer. Repeating a request (same ``request_id``) or the same answer is a no-op.
    A multi-label project's answer is a set: ``labels`` (a list) or ``value`` (``"a;b"``)."""

    def submit(session: Session, project: Project, annotator: Annotator) -> answers.SubmitResult:
        return answers.submit_label(
            session,
            project,
            annotator,
            item_id=item_id,
            value=answer_value(project, body.answer()),
            duration_ms=body.duration_ms,
            request_id=body.request_id,
            group=body.group,
        )

    return _answer(state, user, project_id, submit, reveal=True)


@router.post("/items/{item_id}/skip", response_model=SubmitOut, response_model_exclude_unset=True)
def skip_item(
    project_id: ProjectId, item_id: ItemId, body: SkipRequest, state: State, user: User
) -> dict[str, Any]:
    """Pass on a held item: it goes back to others and is not offered to you again."""
    submit = partial(
        answers.skip_item, item_id=item_id, duration_ms=body.duration_ms, request_id=body.request_id
    )
    return _answer(state, user, project_id, submit, reveal=False)


class UndoRequest(BaseModel):
    request_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="Makes a retried undo harmless: the same id never takes back a second answer.",
    )


@router.post("/undo", response_model=AssignmentOut, response_model_exclude_unset=True)
def undo(
    project_id: ProjectId, state: State, user: User, body: UndoRequest | None = None
) -> dict[str, Any]:
    """Take back the latest answer; the item comes back to this annotator."""
    request_id = body.request_id if body is not None else None
    with _annotating(state, user, project_id) as (session, project, annotator):
        assignment = undoing.undo_last(session, project, annotator, request_id=request_id)
        return assignment_view(assignment, project, state.folder)


@router.post("/release", response_model=ReleaseOut)
def release(
    project_id: ProjectId, body: ReleaseRequest, state: State, user: User
) -> dict[str, int]:
    """Hand leased items back (the page is closing)."""
    with _annotating(state, user, project_id, durable=False) as (session, _, annotator):
        released = leasing.release(session, annotator, leases=body.leases, items=body.items)
        return {"released": released}
