"""A profanity classifier: one "offensive language" probability per text.

`alt-profanity-check` (MIT): a linear SVM over character and word n-grams
(scikit-learn), calibrated to a probability, trained on offensive tweets
(Davidson et al., where hate and offensive are merged) and Wikipedia's toxic
comments. It is *not* OpenAI's moderation model and sees words, not intent:
insults and swearing score high ("you are an idiot" 1.0, "this is fucking
great!" 1.0, "I hate mondays" 0.9), while politely worded hate scores low
("immigrants are ruining this country and should all go back" 0.32), and
it knows nothing of violence, self-harm or sexual content beyond the words'
crudeness. engine.audio_types says which OpenAI category it speaks for.

Loading (scikit-learn and the pickled model) takes about 2 s; scoring is
a sparse dot product, thousands of short texts a second on one core, and
thread-safe (read-only).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# The library's own cut (`predict`): calibrated probability above one half.
DEFAULT_THRESHOLD = 0.5


class ProfanityClassifier:
    """The alt-profanity-check model, loaded once."""

    def __init__(self) -> None:
        # Importing the module loads the vectorizer and the model.
        from profanity_check import profanity_check

        self._vectorizer: Any = profanity_check.vectorizer
        self._model: Any = profanity_check.model

    def score(self, texts: Sequence[str]) -> list[float]:
        """The probability that each text is offensive, in input order."""
        if not texts:
            return []
        probabilities = self._model.predict_proba(self._vectorizer.transform(list(texts)))
        return [float(p) for p in np.asarray(probabilities)[:, 1]]
