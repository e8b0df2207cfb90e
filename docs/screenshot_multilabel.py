"""Make the README's multi-label screenshot: `python docs/screenshot_multilabel.py DATA`, where
DATA is GoEmotions with the Ekman taxonomy (a CSV of id, text and labels, the names joined by
';'; the benchmarks' shared data has it as text/goemotions_ekman/train.csv). Needs chromium
and playwright.

Makes a multi-label project (TF-IDF, the model's guess shown before answering) of 2,000
comments drawn with seed 0, answers 300 of them with the file's own label sets, lets the worker
fit once, then signs an annotator in, passes on items until one whose label set in the file has
two labels or more, turns those labels on by keyboard and photographs the page with the
why-panel open: the guessed set, the pressed labels and every label's probability with its
threshold. Nothing is submitted. Writes docs/annotate-multilabel.png.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import tempfile
import threading
import time
from pathlib import Path

import pandas as pd
from screenshots import annotating  # docs/, beside this script

from labelwise.label_sets import parse_label_list
from labelwise.server import ServerConfig, create_app
from labelwise.services.setup import init_project
from labelwise.services.worker import train_once
from labelwise.store.annotators import create_annotator
from labelwise.store.answers import submit_label
from labelwise.store.models import Annotator, Item
from labelwise.store.projects import ProjectSettings, answer_value, get_project

DOCS = Path(__file__).resolve().parent
LABELS = ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
#: Comments with these words are left out of the sample: the picture is for a README.
COARSE = ("fuck", "shit", "bitch", "cunt", "dick", "ass ", "damn", "hell", "kill", "die")


def _sample(data: Path, n: int) -> pd.DataFrame:
    frame = pd.read_csv(data, dtype=str, keep_default_na=False)
    clean = frame[~frame["text"].str.lower().str.contains("|".join(COARSE))]
    return clean.sample(n=n, random_state=0).reset_index(drop=True)


def _serve(app: object) -> tuple[str, object]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="GoEmotions (Ekman) train.csv")
    parser.add_argument("--out", type=Path, default=DOCS / "annotate-multilabel.png")
    args = parser.parse_args()
    sample = _sample(args.data, 2000)
    truth = {row.id: parse_label_list(row.labels) for row in sample.itertuples()}
    work = Path(tempfile.mkdtemp())
    try:
        sample[["id", "text"]].to_csv(work / "comments.csv", index=False)
        settings = ProjectSettings(
            multi_label=True, features="tfidf", show_guess="before", overlap=0.0, routine=0.0
        )
        opened, _ = init_project(
            work / "p", work / "comments.csv", name="emotions", labels=LABELS, settings=settings
        )
        with opened.db.write() as s:
            project = get_project(s, project_id=opened.project_id)
            admin = s.get_one(Annotator, 1)
            for item in s.query(Item).order_by(Item.id).limit(300):
                value = answer_value(project, truth[item.external_id])
                submit_label(s, project, admin, item_id=item.id, value=value, duration_ms=4000)
            _, token = create_annotator(s, project, name="maria", role="annotator")
        assert train_once(opened.folder, opened.db, force=True).status == "trained"
        base, server = _serve(create_app(ServerConfig(opened)))

        with annotating(base, token) as page:
            keys = dict(
                page.eval_on_selector_all(
                    "#label-bar .btn-label", "bs => bs.map(b => [b.dataset.value, b.dataset.key])"
                )
            )
            for _ in range(200):
                shown = page.inner_text("#item-ref").strip().lstrip("#")
                if len(truth[shown]) >= 2:
                    break
                page.keyboard.press("s")
                page.wait_for_function(
                    "r => document.getElementById('item-ref').textContent.trim() !== '#' + r"
                    " && document.getElementById('annotate').dataset.state === 'item'",
                    arg=shown,
                )
            else:
                raise SystemExit("no item with two labels or more came up")
            page.reload()  # the same item (held by maria), without the skips' status line
            page.wait_for_selector('#annotate[data-state="item"]')
            assert page.inner_text("#item-ref").strip() == "#" + shown
            for label in truth[shown]:
                page.keyboard.press(keys[label])
            time.sleep(0.5)
            page.screenshot(path=str(args.out))
        server.should_exit = True  # type: ignore[attr-defined]
        opened.db.dispose()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
