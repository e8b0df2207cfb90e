"""What several benchmarks share: the single-label text sets of the shared data, and the
commit a result was made at."""

from __future__ import annotations

import subprocess

#: name: (path under the data dir, text column, label column); None where the file says.
TEXT_SETS = {
    "sms_spam": ("text/sms_spam/SMSSpamCollection", None, None),
    "sst2": ("text/sst2/train.csv", "text", "label"),
    "trec": ("text/trec/train.csv", "text", "label"),
    "subj": ("text/subj/subj.csv", "text", "label"),
    "custrev": ("text/custrev/custrev.csv", "text", "label"),
    "hate_speech": ("text/hate_speech_davidson/labeled_data.csv", "text", "label"),
    "amazon": ("text/sentiment_labelled_sentences/amazon_cells_labelled.txt", None, None),
    "imdb": ("text/sentiment_labelled_sentences/imdb_labelled.txt", None, None),
    "yelp": ("text/sentiment_labelled_sentences/yelp_labelled.txt", None, None),
}


def commit() -> str:
    """The short hash of the checkout's HEAD ("unknown" outside a git checkout)."""
    done = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    )
    return done.stdout.strip() or "unknown"
