"""Text features of the difficulty classifier: one normalisation and one shared TF-IDF vectoriser.

The query text is normalised in Python (:func:`normalize`: lower case, every whitespace run to
one space, trimmed) before it reaches either scikit-learn or ONNX Runtime. Two converter gaps make
this the place to do it rather than the graph:

* skl2onnx turns ``analyzer="char"`` into a tokenizer that drops newlines and keeps whitespace runs,
  while scikit-learn collapses runs of two or more whitespace characters to one space first: texts
  with ``"\\n\\n"`` (reasoning-gym prompts) would differ by up to 0.2 in a feature.
* lower-casing in the graph is ONNX ``StringNormalizer``, whose case mapping depends on the C++
  locale (and without ``locale="C.UTF-8"`` the session cannot even be created on this machine);
  Python's ``str.lower`` is the same on every machine.

So the vectorisers run with ``lowercase=False`` and the ONNX graph has no ``StringNormalizer``;
the ``locale`` option is still passed to the converter in case a vectoriser is switched back.
This module imports nothing heavy: the scorer needs only :func:`normalize`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sklearn.pipeline import FeatureUnion

# Recorded in the model card; the scorer refuses a model trained on another normalisation.
NORMALIZATION = "lower+collapse-whitespace/v1"
# Words and numbers, and every other single non-space character as its own token (operators,
# "?", quotes, non-ASCII letters). ASCII classes only, so that Python's re and ONNX Runtime's re2
# read it the same way.
TOKEN_PATTERN = r"[A-Za-z0-9_]+|[^\sA-Za-z0-9_]"
ONNX_LOCALE = "C.UTF-8"


def normalize(text: str) -> str:
    """The text both scikit-learn and ONNX Runtime see: lower case, single spaces, trimmed."""
    return " ".join(text.lower().split())


def make_vectorizer(
    word_ngrams: tuple[int, int] = (1, 2),
    char_ngrams: tuple[int, int] = (1, 4),
    min_df: int = 2,
) -> FeatureUnion:
    """Word and character n-gram TF-IDF side by side (sublinear tf, l2 per block), unfitted."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.pipeline import FeatureUnion

    common = {"sublinear_tf": True, "min_df": min_df, "lowercase": False}
    return FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=word_ngrams, token_pattern=TOKEN_PATTERN, **common)),
        ("char", TfidfVectorizer(analyzer="char", ngram_range=char_ngrams, **common)),
    ])

