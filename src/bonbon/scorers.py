"""Built-in reward functions backed by sentiment lexicons that ship with their packages (no download):
``{function: "bonbon.scorers:vader"}`` and ``{function: "bonbon.scorers:textblob"}`` (extra ``real``).

Both score the response alone, in [-1, 1], and give exactly 0.0 to a text without sentiment words: the
n samples of a prompt can tie (pairs drop a prompt whose n scores are all equal; win rates count a tie
as 1/2). See docs/reward-functions.md.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=1)
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader(conversations: Sequence[Any], responses: Sequence[str]) -> list[float]:
    """VADER's compound score of each response (Hutto & Gilbert 2014): the normalised sum of its
    lexicon valences with rules for negation, intensifiers and punctuation, in [-1, 1]."""
    analyzer = _vader()
    return [float(analyzer.polarity_scores(text)["compound"]) for text in responses]


def textblob(conversations: Sequence[Any], responses: Sequence[str]) -> list[float]:
    """TextBlob's (Pattern lexicon) polarity of each response: the mean polarity of its opinion words,
    with modifiers and negation, in [-1, 1]."""
    from textblob import TextBlob

    return [float(TextBlob(text).sentiment.polarity) for text in responses]
