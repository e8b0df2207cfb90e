"""Server-rendered pages: login, annotate, dashboard, review. No front-end build step: Jinja2
templates (autoescaped) and a little plain JavaScript from /static."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlalchemy.orm import Session

from labelwise.exceptions import AuthenticationError
from labelwise.server.deps import Principal, State, optional_principal, principal_for
from labelwise.server.markdown import guidelines_version, render_markdown
from labelwise.server.security import csrf_token, same_origin
from labelwise.services.dashboard import dashboard as dashboard_figures
from labelwise.services.dashboard import hide_colleagues
from labelwise.store import sign_ins
from labelwise.store.annotators import authenticate
from labelwise.store.models import Annotator, Project
from labelwise.store.projects import (
    SETTING_HELP,
    ProjectSettings,
    get_project,
    label_keys,
    settings_of,
)
from labelwise.store.review import list_conflicts

router = APIRouter(include_in_schema=False)


def _templates(request: Request) -> Any:
    return request.app.state.templates


def _page(request: Request, name: str, user: Principal, **context: Any) -> HTMLResponse:
    return _templates(request).TemplateResponse(
        request, name, {"me": user, "csrf": csrf_token(user.credential), **context}
    )


def _login_redirect() -> RedirectResponse:
    return RedirectResponse("/login", status_code=303)


@router.get("/", response_class=HTMLResponse)
def home(request: Request, state: State) -> Response:
    user = optional_principal(request, state)
    if user is None:
        return _login_redirect()
    return RedirectResponse(f"/p/{user.project_id}/annotate", status_code=303)


_NOT_HERE = "this sign-in form was sent from another site; sign in from this server's own page"


def _login_form(request: Request, error: str | None, status_code: int = 200) -> Response:
    return _templates(request).TemplateResponse(
        request, "login.html", {"error": error}, status_code=status_code
    )


def _sign_in(
    request: Request, state: Any, start: Callable[[Session], tuple[Annotator, str]]
) -> Response:
    """A sign-in: ``start`` (in a write transaction) gives the annotator and the secret of
    their new session; the answer sets its cookie and goes on to the project, or shows the
    form again with why not."""
    if not same_origin(request.headers):
        return _login_form(request, _NOT_HERE, status_code=403)
    try:
        with state.db.write() as session:
            annotator, secret = start(session)
            project_id = annotator.project_id
    except AuthenticationError as exc:
        return _login_form(request, str(exc), status_code=401)
    response = RedirectResponse(f"/p/{project_id}/annotate", status_code=303)
    response.set_cookie(
        state.cookie,
        secret,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=sign_ins.SESSION_DAYS * 24 * 3600,
        path="/",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request, token: str | None = None) -> Response:
    """The sign-in form. A token in the address signs nobody in: addresses land in proxy logs
    and browser history (``labelwise token`` prints a one-time sign-in link instead)."""
    if token:
        return _login_form(
            request,
            "a token in the address is not accepted (addresses are logged): paste it here, "
            "or ask your admin for a sign-in link",
            status_code=400,
        )
    return _login_form(request, None)


@router.post("/login", response_class=HTMLResponse)
def login_form(
    request: Request, state: State, token: Annotated[str, Form(max_length=200)]
) -> Response:
    """Sign in with a token: a new session, whose secret (not the token) the cookie keeps."""

    def start(session: Session) -> tuple[Annotator, str]:
        annotator = authenticate(session, token.strip(), project_id=state.project_id)
        return annotator, sign_ins.start_session(session, annotator)

    return _sign_in(request, state, start)


@router.get(sign_ins.LINK_PATH + "{code}", response_class=HTMLResponse)
def link_page(request: Request, state: State, code: str) -> Response:
    """What a sign-in link signs in, to confirm. Looking spends nothing: a link scanner (or a
    preview) that opens the address leaves the link usable."""
    try:
        with state.db.read() as session:
            annotator = sign_ins.link_annotator(session, state.project_id, code)
            project = get_project(session, project_id=state.project_id)
            who = {"name": annotator.name, "role": annotator.role, "project": project.name}
    except AuthenticationError as exc:
        return _login_form(request, str(exc), status_code=401)
    return _templates(request).TemplateResponse(
        request, "sign_in_link.html", {"who": who, "code": code}
    )


@router.post("/login/link", response_class=HTMLResponse)
def link_sign_in(
    request: Request, state: State, code: Annotated[str, Form(max_length=200)]
) -> Response:
    """Spend a sign-in link: a new session for its annotator."""
    return _sign_in(
        request, state, lambda session: sign_ins.redeem_link(session, state.project_id, code)
    )


@router.post("/logout")
def logout(request: Request, state: State) -> Response:
    """Sign out: the session ends in the database, so a copy of the cookie is worthless too."""
    user = principal_for(request, state)  # a cross-site form cannot sign you out: CSRF applies
    if user.via_cookie:
        with state.db.write() as session:
            sign_ins.end_session(session, user.credential)
    response = _login_redirect()
    response.delete_cookie(state.cookie, path="/")
    return response


def _user_for_page(request: Request, state: Any, project_id: int) -> Principal | None:
    user = optional_principal(request, state)
    if user is None:
        return None
    user.check_project(project_id)
    return user


def _project_page(
    request: Request,
    state: Any,
    project_id: int,
    name: str,
    shown: Callable[[Session, Project, ProjectSettings], dict[str, Any]],
    *,
    admin_only: str | None = None,
) -> Response:
    """A page of the project that shows its labels with their keys, plus what ``shown`` reads
    (in the same session); ``admin_only`` names the page for the error others get."""
    user = _user_for_page(request, state, project_id)
    if user is None:
        return _login_redirect()
    if admin_only is not None and not user.is_admin:
        return _templates(request).TemplateResponse(
            request,
            "error.html",
            {"status": 403, "message": f"{admin_only} is for admins"},
            status_code=403,
        )
    with state.db.read() as session:
        project = get_project(session, project_id=project_id)
        settings = settings_of(project)
        context = shown(session, project, settings)
    keys = label_keys(project.label_set, settings.label_keys)
    return _page(request, name, user, project=project, keys=keys, **context)


@router.get("/p/{project_id}/annotate", response_class=HTMLResponse)
def annotate(request: Request, project_id: int, state: State) -> Response:
    def shown(_: Session, project: Project, settings: ProjectSettings) -> dict[str, Any]:
        guidelines = settings.guidelines
        return {
            "show_guess": settings.show_guess,
            "multi_label": settings.multi_label,
            "label_help": settings.label_help,
            "guidelines": render_markdown(guidelines) if guidelines.strip() else "",
            "guidelines_version": guidelines_version(guidelines),
        }

    return _project_page(request, state, project_id, "annotate.html", shown)


@router.get("/p/{project_id}/dashboard", response_class=HTMLResponse)
def dashboard(request: Request, project_id: int, state: State) -> Response:
    from labelwise.server import charts

    user = _user_for_page(request, state, project_id)
    if user is None:
        return _login_redirect()
    with state.db.read() as session:
        project = get_project(session, project_id=project_id)
        figures = dashboard_figures(session, project)
    if not user.is_admin:
        hide_colleagues(figures, user.name)
    return _page(
        request,
        "dashboard.html",
        user,
        project=project,
        figures=figures,
        charts=charts.dashboard_charts(figures),
    )


@router.get("/p/{project_id}/review", response_class=HTMLResponse)
def review(request: Request, project_id: int, state: State) -> Response:
    def shown(session: Session, project: Project, settings: ProjectSettings) -> dict[str, Any]:
        return {
            "n_conflicts": len(list_conflicts(session, project)),
            "multi_label": settings.multi_label,
        }

    return _project_page(
        request, state, project_id, "review.html", shown, admin_only="the review queue"
    )


@router.get("/p/{project_id}/settings", response_class=HTMLResponse)
def settings_page(request: Request, project_id: int, state: State) -> Response:
    """Every setting with what it does, changed through the settings API (same checks)."""
    from labelwise.features.spec import default_features
    from labelwise.models.registry import available_models
    from labelwise.strategies.registry import available_strategies

    def shown(_: Session, project: Project, settings: ProjectSettings) -> dict[str, Any]:
        return {
            "settings": settings,
            "help": SETTING_HELP,
            "strategies": available_strategies(),
            "models": available_models(),
            "default_features": default_features(project.kind),
        }

    return _project_page(
        request, state, project_id, "settings.html", shown, admin_only="the settings page"
    )


@router.get("/p/{project_id}/items", response_class=HTMLResponse)
def items_page(request: Request, project_id: int, state: State) -> Response:
    """The data browser: find items, open one, see its history, relabel it."""
    from labelwise.store.annotators import list_annotators
    from labelwise.store.browse import STATUSES

    def shown(session: Session, project: Project, settings: ProjectSettings) -> dict[str, Any]:
        names = [a.name for a in list_annotators(session, project)]
        return {
            "annotators": names,
            "statuses": STATUSES,
            "multi_label": settings.multi_label,
        }

    return _project_page(
        request, state, project_id, "items.html", shown, admin_only="the data browser"
    )
